//! Chat models back onto a GPU that recovered. When the GPU monitor sees a GPU leave
//! `failed`, the active versions of the chat models placed on it (whose CUDA state did
//! not survive the failure) and of those that wanted a GPU and found none are loaded
//! again, one at a time under the lifecycle's operation lock, with a fresh placement
//! (`chat::placement`), and swapped in: requests in flight finish on the engine they
//! started on. A version that fails to load keeps its current engine and says why.

use std::sync::Arc;

use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::{ManageError, ModelManager};

impl ModelManager {
    /// Reloads the active version of chat model `name` with a fresh placement.
    fn reload_chat_blocking(&self, name: &str) -> Result<Option<String>, ManageError> {
        if self.chat.load().resolve(name, None).is_none() {
            return Ok(None); // not a chat model, or no longer served
        }
        let Some(version) = self.registry.active(name)? else {
            return Ok(None);
        };
        let dir = self.store.open_version(name, &version)?;
        let variant = super::variant::choose(&dir.manifest, self.hardware())
            .map_err(ManageError::NoVariant)?;
        let loaded = self.load_blocking(dir, variant.as_deref())?;
        self.swap_in(loaded);
        Ok(Some(version))
    }

    fn gpu_indexes(&self) -> Vec<u32> {
        match self.gpu.snapshot() {
            crate::monitoring::gpu::Presence::Present(gpus) => {
                gpus.iter().map(|g| g.device.index).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Reloads the models that go back to `gpu`, now that it recovered.
    async fn return_to_gpu(self: &Arc<Self>, gpu: u32) {
        for name in self.gpu.for_recovery(gpu) {
            let _op = Arc::clone(&self.ops).lock_owned().await;
            let me = Arc::clone(self);
            let model = name.clone();
            let result = tokio::task::spawn_blocking(move || me.reload_chat_blocking(&model))
                .await
                .map_err(super::worker)
                .and_then(|r| r);
            match result {
                Ok(Some(version)) => {
                    tracing::info!(model = %name, %version, gpu, "chat model reloaded after its GPU recovered");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(model = %name, gpu, error = %e, "chat model could not be reloaded after its GPU recovered; it keeps its current engine");
                }
            }
        }
    }
}

/// Listens for recovered GPUs for as long as the daemon runs.
pub fn spawn(
    manager: Arc<ModelManager>,
    mut recovered: Receiver<u32>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match recovered.recv().await {
                Ok(gpu) => manager.return_to_gpu(gpu).await,
                // Missed some: every GPU may have recovered meanwhile; reloading a model
                // whose GPU did not is harmless (it is placed afresh).
                Err(RecvError::Lagged(_)) => {
                    for gpu in manager.gpu_indexes() {
                        manager.return_to_gpu(gpu).await;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}
