//! Small helpers shared by the agent's modules.

/// Runs blocking store work (fsyncs) off the async runtime's threads.
pub async fn blocking<T: Send + 'static, E: Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        // The closure panicked; keep the panic rather than invent an error.
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    }
}
