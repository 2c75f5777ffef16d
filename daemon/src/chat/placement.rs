//! Where a chat version's layers go when it loads: `chat.n_gpu_layers = "auto"` puts as
//! many as fit ([`coffer_chat::gpu_plan`]) on the GPU the model names
//! (`gpu.models.NAME.gpu`) or on the usable GPU with the most free memory; a number is
//! taken as given. The decision is logged, exported (`coffer_chat_gpu_layers`,
//! `coffer_chat_gpu_weights_bytes`, `coffer_chat_gpu_kv_cache_bytes`) and recorded with
//! the GPU monitor, so that a failure of that GPU (and only of that GPU) sends the model
//! to its fallback policy (`serving::gpu_fallback`). A model that is another's
//! `cpu_variant` stays on the CPU.

use std::path::Path;

use coffer_chat::gpu_plan::{self, ContextShape, ModelShape, Plan};
use coffer_chat::{ChatModelMetrics, ChatSettings, GpuLayers};

use crate::monitoring::gpu::GpuHealth;
use crate::monitoring::gpu::placement::Device;

/// What placement knows of the host's GPUs.
#[derive(Debug, Clone, Copy)]
pub struct GpuSite<'a> {
    pub health: &'a GpuHealth,
    /// The GPU the model names (`gpu.models.NAME.gpu`).
    pub named: Option<u32>,
    /// GPU readings come from a scripted timeline (`gpu.simulate`): placement is planned
    /// as on a GPU build, for drills and tests, even where this build cannot offload.
    pub simulated: bool,
    /// The GPU model this one is the `cpu_variant` of: it stays on the CPU, whatever
    /// `n_gpu_layers` says, or it would fail with the GPU it stands in for.
    pub cpu_variant_of: Option<&'a str>,
}

/// A placement decision.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The settings to load with (`n_gpu_layers` a number, `main_gpu` set).
    pub settings: ChatSettings,
    /// `None`: layers may be on any GPU (a fixed number without a named GPU).
    pub device: Option<Device>,
    /// The GPU cost of the layers placed, when the model's shape could be read.
    pub plan: Option<Plan>,
    /// Why, in words, for the log.
    pub why: String,
    /// It wanted a GPU and found none usable while the host has GPUs: it is reloaded
    /// when one recovers.
    pub awaits_gpu: bool,
}

fn context_of(settings: &ChatSettings, shape: &ModelShape) -> ContextShape {
    let trained = if shape.n_ctx_train > 0 {
        shape.n_ctx_train
    } else {
        u64::MAX
    };
    // As the engine sizes its context (`llama::LlamaEngine::start`).
    let per_sequence = (settings.context as u64).min(trained).max(64);
    ContextShape {
        sequences: settings.slots as u64,
        per_sequence,
        batch: u64::from(settings.n_batch),
    }
}

fn on_cpu(settings: &ChatSettings, why: String) -> Placed {
    let mut settings = settings.clone();
    settings.n_gpu_layers = GpuLayers::Fixed(0);
    settings.main_gpu = None;
    Placed {
        settings,
        device: Some(Device::Cpu),
        plan: None,
        why,
        awaits_gpu: false,
    }
}

/// Decides where the layers of the GGUF at `gguf` go.
pub fn place(gguf: &Path, settings: &ChatSettings, site: GpuSite<'_>) -> Placed {
    if let Some(of) = site.cpu_variant_of {
        return on_cpu(settings, format!("the cpu_variant of {of}"));
    }
    // The header is read only where a GPU could take layers.
    match settings.n_gpu_layers {
        GpuLayers::Fixed(0) => on_cpu(settings, "chat.n_gpu_layers = 0".into()),
        GpuLayers::Fixed(n) => {
            let mut s = settings.clone();
            s.main_gpu = site.named;
            Placed {
                plan: ModelShape::read(gguf)
                    .ok()
                    .map(|shape| gpu_plan::cost(&shape, context_of(settings, &shape), n)),
                settings: s,
                device: site.named.map(Device::Gpu),
                why: format!("chat.n_gpu_layers = {n}"),
                awaits_gpu: false,
            }
        }
        GpuLayers::Auto => auto(settings, site, || ModelShape::read(gguf)),
    }
}

fn auto(
    settings: &ChatSettings,
    site: GpuSite<'_>,
    shape: impl FnOnce() -> Result<ModelShape, gpu_plan::ShapeError>,
) -> Placed {
    let usable = site.health.usable();
    if !site.simulated && !gpu_plan::offload_supported() {
        let why = if usable.is_empty() {
            "no usable GPU"
        } else {
            "this cofferd is a CPU build (the cofferd-cuda package offloads to the GPU)"
        };
        return on_cpu(settings, why.into());
    }
    let chosen = match site.named {
        Some(named) => usable.iter().find(|(i, _)| *i == named).copied(),
        None => usable.iter().max_by_key(|(_, free)| *free).copied(),
    };
    let Some((gpu, free)) = chosen else {
        let why = match site.named {
            Some(named) => format!("GPU {named} (gpu.models.NAME.gpu) is failed, absent or unread"),
            None => "no usable GPU".into(),
        };
        let mut placed = on_cpu(settings, why);
        // GPUs that are there but failed (or not read yet) may come back.
        placed.awaits_gpu = matches!(
            site.health.snapshot(),
            crate::monitoring::gpu::Presence::Present(_)
        );
        return placed;
    };
    let shape = match shape() {
        Ok(shape) => shape,
        Err(e) => return on_cpu(settings, format!("cannot plan offload: {e}")),
    };
    let plan = gpu_plan::plan(
        &shape,
        context_of(settings, &shape),
        free,
        settings.gpu_headroom_bytes,
    );
    if plan.layers == 0 {
        let mut placed = on_cpu(
            settings,
            format!(
                "GPU {gpu} has {} MiB free, less than one layer needs beside {} MiB of headroom",
                free >> 20,
                settings.gpu_headroom_bytes >> 20
            ),
        );
        placed.plan = Some(plan);
        return placed;
    }
    let mut s = settings.clone();
    s.n_gpu_layers = GpuLayers::Fixed(plan.layers);
    s.main_gpu = Some(gpu);
    Placed {
        settings: s,
        device: Some(Device::Gpu(gpu)),
        plan: Some(plan),
        awaits_gpu: false,
        why: format!(
            "auto: {} of {} layers fit in GPU {gpu}'s {} MiB free, {} MiB kept as headroom",
            plan.layers,
            plan.total,
            free >> 20,
            settings.gpu_headroom_bytes >> 20
        ),
    }
}

impl Placed {
    /// Publishes a decision for a version that loaded: the log line, the metrics, and
    /// the GPU monitor's record of the model's device and the memory it took.
    pub fn publish(&self, model: &str, version: &str, site: GpuSite<'_>, m: &ChatModelMetrics) {
        let layers = self.settings.n_gpu_layers.resolved();
        let (weights, kv) = match (&self.plan, layers) {
            (Some(p), 1..) => (p.weights_bytes, p.kv_bytes),
            _ => (0, 0),
        };
        m.gpu_layers.set(i64::from(layers));
        m.gpu_weights_bytes
            .set(i64::try_from(weights).unwrap_or(i64::MAX));
        m.gpu_kv_bytes.set(i64::try_from(kv).unwrap_or(i64::MAX));
        tracing::info!(
            model,
            version,
            layers,
            of = ?self.plan.map(|p| p.total),
            gpu = ?self.device,
            weights_mib = weights >> 20,
            kv_cache_mib = kv >> 20,
            simulated = site.simulated,
            why = %self.why,
            "chat model placed"
        );
        if let Some(device) = self.device {
            site.health.place(model, device);
        }
        site.health
            .set_awaiting(model, self.awaits_gpu.then_some(site.named));
        if let (Some(Device::Gpu(gpu)), Some(plan), 1..) = (self.device, self.plan, layers) {
            site.health.reserve(gpu, plan.gpu_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::gpu::health::Level;
    use crate::monitoring::gpu::probe::DeviceInfo;
    use crate::monitoring::gpu::{GpuStatus, Presence};

    const MIB: u64 = 1 << 20;

    fn settings(layers: GpuLayers) -> ChatSettings {
        let raw = crate::config::parse("[tls]\ncert = \"/c\"\nkey = \"/k\"\n").unwrap();
        let mut s = crate::config::validate(&raw).unwrap().chat.engine;
        s.n_gpu_layers = layers;
        s
    }

    fn shape() -> ModelShape {
        // 30 blocks of 10 MiB, 1 KiB of KV per cell: about 18 MiB a layer at 4 × 2048.
        ModelShape {
            layer_bytes: vec![10 * MIB; 30],
            output_bytes: 40 * MIB,
            kv_cell_bytes: 1024,
            n_ctx_train: 8192,
            ..ModelShape::default()
        }
    }

    fn health(gpus: &[(Level, u64)]) -> std::sync::Arc<GpuHealth> {
        GpuHealth::new(Presence::Present(
            gpus.iter()
                .enumerate()
                .map(|(i, (level, free_mib))| GpuStatus {
                    device: DeviceInfo {
                        index: i as u32,
                        uuid: format!("GPU-{i}"),
                        name: "scripted".into(),
                    },
                    level: *level,
                    reason: "test".into(),
                    memory_free_bytes: Some(free_mib * MIB),
                    sampled: true,
                    samples: 1,
                })
                .collect(),
        ))
    }

    fn site(h: &GpuHealth, named: Option<u32>) -> GpuSite<'_> {
        GpuSite {
            health: h,
            named,
            simulated: true,
            cpu_variant_of: None,
        }
    }

    #[test]
    fn auto_takes_the_roomiest_usable_gpu_unless_the_model_names_one() {
        let h = health(&[
            (Level::Healthy, 1_100),
            (Level::Failed, 80_000),
            (Level::Healthy, 40_000),
        ]);
        let p = auto(&settings(GpuLayers::Auto), site(&h, None), || Ok(shape()));
        assert_eq!(p.device, Some(Device::Gpu(2)), "{p:?}");
        assert_eq!(p.settings.main_gpu, Some(2));
        assert_eq!(p.settings.n_gpu_layers, GpuLayers::Fixed(31));

        let p = auto(
            &settings(GpuLayers::Auto),
            site(&h, Some(0)),
            || Ok(shape()),
        );
        assert_eq!(p.device, Some(Device::Gpu(0)));
        let GpuLayers::Fixed(partial) = p.settings.n_gpu_layers else {
            panic!("{p:?}")
        };
        assert!(partial > 0 && partial < 31, "{p:?}");

        // A named GPU that is failed does not send the model elsewhere silently.
        let p = auto(
            &settings(GpuLayers::Auto),
            site(&h, Some(1)),
            || Ok(shape()),
        );
        assert_eq!(p.device, Some(Device::Cpu));
        assert!(p.why.contains("GPU 1"), "{}", p.why);
    }

    #[test]
    fn auto_without_room_or_without_a_gpu_stays_on_the_cpu_and_says_why() {
        let h = health(&[(Level::Healthy, 500)]);
        let p = auto(&settings(GpuLayers::Auto), site(&h, None), || Ok(shape()));
        assert_eq!(p.settings.n_gpu_layers, GpuLayers::Fixed(0));
        assert!(p.why.contains("headroom"), "{}", p.why);
        let none = GpuHealth::new(Presence::Absent("no driver".into()));
        let p = auto(
            &settings(GpuLayers::Auto),
            site(&none, None),
            || Ok(shape()),
        );
        assert_eq!(p.device, Some(Device::Cpu));
        assert_eq!(p.why, "no usable GPU");
    }

    #[test]
    fn a_second_model_plans_with_the_memory_the_first_took() {
        let h = health(&[(Level::Healthy, 1_400)]);
        let s = settings(GpuLayers::Auto);
        let first = auto(&s, site(&h, None), || Ok(shape()));
        let metrics = coffer_chat::ChatMetrics::register(&mut Default::default());
        first.publish("a", "1", site(&h, None), &metrics.for_model("a", "1"));
        let second = auto(&s, site(&h, None), || Ok(shape()));
        assert!(
            second.settings.n_gpu_layers.resolved() < first.settings.n_gpu_layers.resolved(),
            "{first:?} then {second:?}"
        );
    }
}
