//! llama.cpp's process-wide backend, initialised once (its log callback silenced) for the
//! serving engines, the evaluation gate and the grammar checks alike.

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::engine::LoadError;

/// llama.cpp's backend may be initialised once per process.
pub fn backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| LoadError::Backend(e.clone()))
}
