//! A node for a bench: `datagate::gateway::server::start` on a thread and current-thread
//! runtime of its own, stopped and joined when dropped; what the bench needs of the running
//! node (`pick`) is reported back when it is up. Shared by `benches/autofill.rs` and
//! `benches/opendata.rs`.

use anyhow::Context as _;
use std::path::Path;

/// A running node and what `pick` took from it.
pub struct NodeThread<T> {
    /// What the bench took from the running node.
    pub ready: T,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Loads `file`, starts the node on a thread called `name`, and returns once `pick` has
/// taken what the bench needs (or the start failed).
pub fn start<T: Send + 'static>(
    file: &Path,
    name: &str,
    pick: impl FnOnce(&datagate::gateway::server::Node) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<NodeThread<T>> {
    let config = datagate::config::load(file).map_err(|errors| {
        anyhow::anyhow!(
            "the bench configuration is invalid: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (ready, started) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready.send(Err(anyhow::Error::from(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                match datagate::gateway::server::start(config).await {
                    Ok(node) => match pick(&node) {
                        Ok(taken) => {
                            let _ = ready.send(Ok(taken));
                            let _ = node.run(stopped).await;
                        }
                        Err(error) => {
                            let _ = ready.send(Err(error));
                        }
                    },
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            });
        })?;
    let ready = started.recv().context("the node thread did not report")??;
    Ok(NodeThread {
        ready,
        stop,
        thread: Some(thread),
    })
}

impl<T> Drop for NodeThread<T> {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
