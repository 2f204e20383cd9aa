//! `segvol report`: merges the shards of one `segvol eval --data` run (`--merge`), or puts
//! several runs side by side (a table and one plot with a line per run and variant).
//! The work is [`segvol_harness::report`]'s; this is its arguments and output.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use segvol_harness::report::{compare, merge_shards, read_run};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run folders written by `segvol eval --data` (with --merge: the shards of one run).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Merge the folders as shards of one run: metrics CSVs, summary.json and the plot of
    /// the whole run go to --out.
    #[arg(long)]
    pub merge: bool,
    /// Output folder (report.md, report.png, report.svg; or the merged run).
    #[arg(long)]
    pub out: PathBuf,
    /// Names of the runs in the table and the legend (comma-separated; default: folder names).
    #[arg(long, value_delimiter = ',')]
    pub names: Option<Vec<String>>,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|d| read_run(d))
        .collect::<Result<Vec<_>, _>>()?;
    if args.merge {
        let command: Vec<String> = std::env::args().collect();
        let cases = merge_shards(&runs, &args.out, &command)?;
        out!(
            "merged {} shards ({cases} cases) into {}",
            runs.len(),
            args.out.display()
        );
    } else {
        let md = compare(&runs, args.names.as_deref(), &args.out)?;
        out!("{}", md.trim_end());
        out!(
            "wrote {}/report.md, report.png, report.svg",
            args.out.display()
        );
    }
    Ok(())
}
