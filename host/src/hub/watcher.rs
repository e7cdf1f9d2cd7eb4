//! Watching the plugins directory: file events in, "reconcile this path"
//! out. Everything else (loading, swapping, removing) is the
//! [`Reloader`]'s.
//!
//! A path is handed on once it has *settled*: no event for [`QUIET`]
//! ([`QUIET_COMPLETE`] after a close-after-write or a rename into place),
//! and no writer still has it open (on Linux, inotify reports when a file
//! opened for writing is closed; a file copied in over several writes is
//! therefore never read half-written). Where close events do not exist, or
//! a writer keeps the file open, [`QUIET_WHILE_OPEN`] of silence settles it.
//! An atomic rename into place settles after [`QUIET`].
//!
//! The directory itself is checked every [`DIR_CHECK`]: while it is
//! missing nothing changes (routes keep serving); when it is back (or was
//! replaced by another directory) the watch is re-established and every
//! file is reconciled again.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode, ModifyKind},
};
use tokio::sync::{mpsc, watch};

use super::reload::{Reloader, is_plugin_file, wasm_files};

/// Quiet period after the last event before a file is reconciled.
pub const QUIET: Duration = Duration::from_millis(100);
/// Shorter quiet period when the last write event says the file is
/// complete (its writer closed it, or it was renamed into place): only to
/// coalesce a burst such as a copy followed by a `chmod`.
pub const QUIET_COMPLETE: Duration = Duration::from_millis(30);
/// Quiet period for a file a writer still holds open.
pub const QUIET_WHILE_OPEN: Duration = Duration::from_secs(2);
/// How often the directory's existence is checked.
const DIR_CHECK: Duration = Duration::from_millis(250);
const TICK: Duration = Duration::from_millis(20);

struct Pending {
    last_event: Instant,
    /// Written to and not yet closed.
    open_for_write: bool,
    /// Closed after writing, or renamed into place, since the last write.
    complete: bool,
}

/// Watch `dir` until `shutdown` turns true, handing settled paths to
/// `reloader`. The watch is in place when this returns: start it before
/// loading the directory, so that no change between loading and watching
/// goes unseen.
pub fn spawn(
    reloader: Arc<Reloader>,
    dir: PathBuf,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (settled_tx, mut settled_rx) = mpsc::unbounded_channel::<(PathBuf, Option<Instant>)>();
    let reconciler = Arc::clone(&reloader);
    tokio::spawn(async move {
        while let Some((path, changed_at)) = settled_rx.recv().await {
            reconciler.reconcile(&path, changed_at).await;
        }
    });
    let (event_tx, events) = mpsc::unbounded_channel();
    // The first watch: files present now are loaded by the startup scan.
    let (watcher, watched) = match dir_id(&dir) {
        Some(id) => match make_watcher(&dir, &event_tx) {
            Ok(w) => {
                tracing::info!(dir = %dir.display(), "watching plugins directory");
                (Some(w), Some(id))
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot watch plugins directory: {e}");
                (None, None)
            }
        },
        None => (None, None),
    };
    let state = WatchState {
        event_tx,
        watcher,
        watched,
    };
    tokio::spawn(follow(reloader, dir, state, events, settled_tx, shutdown))
}

struct WatchState {
    event_tx: mpsc::UnboundedSender<notify::Result<notify::Event>>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: Option<DirId>,
}

fn make_watcher(
    dir: &Path,
    tx: &mpsc::UnboundedSender<notify::Result<notify::Event>>,
) -> notify::Result<notify::RecommendedWatcher> {
    let tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

async fn follow(
    reloader: Arc<Reloader>,
    dir: PathBuf,
    state: WatchState,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    settled: mpsc::UnboundedSender<(PathBuf, Option<Instant>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let WatchState {
        event_tx,
        mut watcher,
        mut watched,
    } = state;
    let mut missing_logged = false;
    let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    let mut last_dir_check = Instant::now() - DIR_CHECK;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                note(&mut pending, event);
                // Take whatever else is queued before looking at timers.
                while let Ok(event) = events.try_recv() {
                    note(&mut pending, event);
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let now = Instant::now();
        if now.duration_since(last_dir_check) >= DIR_CHECK {
            last_dir_check = now;
            match dir_id(&dir) {
                None => {
                    if watched.is_some() || !missing_logged {
                        tracing::warn!(dir = %dir.display(), "plugins directory is missing: routes keep serving; waiting for it to come back");
                        missing_logged = true;
                    }
                    watcher = None;
                    watched = None;
                }
                Some(id) if watched != Some(id) => {
                    match make_watcher(&dir, &event_tx) {
                        Ok(w) => {
                            tracing::info!(dir = %dir.display(), "watching plugins directory");
                            watcher = Some(w);
                            watched = Some(id);
                            missing_logged = false;
                            // Catch up with whatever happened unwatched,
                            // through the same quiet period as events.
                            let mut paths = reloader.known_files();
                            paths.extend(wasm_files(&dir).unwrap_or_default());
                            for path in paths {
                                pending.entry(path).or_insert(Pending {
                                    last_event: now,
                                    open_for_write: false,
                                    complete: false,
                                });
                            }
                        }
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), "cannot watch plugins directory: {e}");
                        }
                    }
                }
                Some(_) => {}
            }
        }
        let ready: Vec<PathBuf> = pending
            .iter()
            .filter(|(_, p)| {
                let quiet = now.duration_since(p.last_event);
                quiet >= QUIET_WHILE_OPEN
                    || (quiet >= QUIET && !p.open_for_write)
                    || (quiet >= QUIET_COMPLETE && p.complete)
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in ready {
            if let Some(p) = pending.remove(&path) {
                let _ = settled.send((path, Some(p.last_event)));
            }
        }
    }
    drop(watcher);
}

/// Record one file event.
fn note(pending: &mut HashMap<PathBuf, Pending>, event: notify::Result<notify::Event>) {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            // The directory check re-establishes the watch if it broke.
            tracing::warn!("plugins directory watch error: {e}");
            return;
        }
    };
    // (open for write, complete) after this event; None: unchanged.
    let state = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some((false, true)),
        EventKind::Access(_) => return,
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
            Some((true, false))
        }
        EventKind::Modify(ModifyKind::Name(_)) => Some((false, true)),
        EventKind::Remove(_) => Some((false, false)),
        _ => None,
    };
    let now = Instant::now();
    for path in event.paths.iter().filter(|p| is_plugin_file(p)) {
        let entry = pending.entry(path.clone()).or_insert(Pending {
            last_event: now,
            open_for_write: false,
            complete: false,
        });
        entry.last_event = now;
        if let Some((open_for_write, complete)) = state {
            entry.open_for_write = open_for_write;
            entry.complete = complete;
        }
    }
}

/// The directory's identity: a directory replaced by another at the same
/// path must be watched again.
type DirId = (u64, u64);

fn dir_id(dir: &Path) -> Option<DirId> {
    let meta = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}
