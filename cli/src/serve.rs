//! `segvol serve`: the nnInteractive remote protocol for napari's and 3D Slicer's plugins
//! (docs/serve.md). Argument parsing only; the server is `segvol-serve`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use indicatif::ProgressBar;
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_interactive::SessionOptions;
use segvol_serve::{ServeConfig, serve};

use crate::case::{ModelArgs, ModelFiles};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (0.0.0.0 for every interface: put a TLS proxy in front then).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (nnInteractive's default; 0 = any free port).
    #[arg(long, default_value_t = 1527)]
    pub port: u16,
    /// Bearer key the clients must send (also read from NN_INTERACTIVE_API_KEY).
    #[arg(long, env = "NN_INTERACTIVE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Sessions at once; a further claim gets 503.
    #[arg(long, default_value_t = 3)]
    pub max_sessions: usize,
    /// Seconds without a real action before a session is dropped.
    #[arg(long, default_value_t = 600.0)]
    pub idle_timeout: f64,
    /// Seconds without any request (heartbeats count) before a session is dropped.
    #[arg(long, default_value_t = 60.0)]
    pub liveness_timeout: f64,
    /// Seconds between two sweeps for expired sessions.
    #[arg(long, default_value_t = 15.0)]
    pub reap_every: f64,
    #[command(flatten)]
    pub model: ModelArgs,
    /// GRU corrector (a file, or `shipped`; default: none,
    /// `segvol_models::CORRECTOR_BY_DEFAULT`).
    #[arg(long)]
    pub corrector: Option<PathBuf>,
    /// Plain SegVol for every click (the default with the shipped model; see
    /// `segvol_models::CORRECTOR_BY_DEFAULT`).
    #[arg(long, conflicts_with = "corrector")]
    pub no_corrector: bool,
    /// Also run SegVol's zoom-in at every action (finer, slower).
    #[arg(long)]
    pub zoom_in: bool,
    #[command(flatten)]
    pub clicks: crate::case::ClickArgs,
}

impl ServeArgs {
    /// The engine settings: live defaults (zoom-in off), this command's flags on top.
    pub fn options(&self) -> SessionOptions {
        SessionOptions {
            zoom_in: self.zoom_in,
            ..self.clicks.on(SessionOptions::live())
        }
    }
}

struct Serve {
    cfg: ServeConfig,
    files: ModelFiles,
}

impl BackendTask for Serve {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<()> {
        let (model, corrector) = self.files.load::<B>(&ProgressBar::hidden(), device)?;
        let with = if corrector.is_some() {
            "with"
        } else {
            "without"
        };
        serve(self.cfg, &model, corrector.as_ref(), device, move |addr| {
            // The one line scripts wait for.
            println!("segvol serve: listening on http://{addr} ({with} the corrector)");
        })?;
        Ok(())
    }
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let mut files = ModelFiles::new(&args.model, args.corrector.as_ref())?.with_default_corrector();
    if args.no_corrector {
        files.corrector = None;
    }
    let secs = |s: f64, what: &str| -> Result<Duration> {
        Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("--{what} {s}: not a duration"))
    };
    let cfg = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        max_sessions: args.max_sessions.max(1),
        idle_timeout: secs(args.idle_timeout, "idle-timeout")?,
        liveness_timeout: secs(args.liveness_timeout, "liveness-timeout")?,
        reap_every: secs(args.reap_every, "reap-every")?,
        max_voxels: args.model.max_voxels,
        request_timeout: Duration::from_secs(55),
        options: args.options(),
    };
    crate::case::init_log();
    dispatch(args.model.backend()?, Serve { cfg, files })
}
