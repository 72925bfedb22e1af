//! The `loadgen` binary: parses the command line, runs, prints, sets the exit code
//! (0 ok, 1 a failed check: loss, errors, regression; 2 the run could not be done).

use std::process::ExitCode;

use clap::Parser;
use loadgen::cli::{Cli, Command, CommonArgs};
use loadgen::scenario::{self, Scenario};
use loadgen::{compare, plot, report, EXIT_ERROR, EXIT_FAILED_CHECK};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = match Scenario::from_command(cli.command) {
        Ok((scenario, common)) => return run_scenario(&scenario, &common),
        Err(command) => command,
    };
    match *command {
        Command::Compare(args) => {
            let baseline = compare::read_report(&args.baseline)?;
            let result = compare::read_report(&args.result)?;
            let thresholds = compare::Thresholds {
                throughput: args.max_regress,
                latency: args.max_p99_regress,
                alpha: args.alpha,
                allow_param_diff: args.allow_param_diff,
            };
            let verdict = compare::compare(&baseline, &result, &thresholds);
            println!(
                "baseline: {} ({})\nresult:   {} ({})",
                args.baseline.display(),
                baseline.name(Some(&args.baseline)),
                args.result.display(),
                result.name(Some(&args.result))
            );
            print!("{}", verdict.table);
            if let Some(diff) = &verdict.param_diff {
                if !args.allow_param_diff {
                    eprintln!("loadgen: error: scenario parameters differ: {diff} (compare like with like, or pass --allow-param-diff)");
                    return Ok(ExitCode::from(EXIT_ERROR));
                }
                println!("note: scenario parameters differ: {diff}");
            }
            for r in &verdict.regressions {
                println!("REGRESSION: {r}");
            }
            if !verdict.regressions.is_empty() {
                return Ok(ExitCode::from(EXIT_FAILED_CHECK));
            }
            if !verdict.undecided.is_empty() {
                for u in &verdict.undecided {
                    println!("UNDECIDED: {u}");
                }
                return Ok(ExitCode::from(EXIT_ERROR));
            }
            println!(
                "no regression: nothing significantly slower (alpha {}) beyond {:.0}% (throughput, CPU) or {:.0}% (latency)",
                args.alpha,
                args.max_regress * 100.0,
                args.max_p99_regress * 100.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Summary { inputs } => {
            let mut reports = Vec::new();
            for input in &inputs {
                reports.push((input.clone(), compare::read_report(input)?));
            }
            print!("{}", report::summary_table(&reports));
            Ok(ExitCode::SUCCESS)
        }
        Command::Plot(args) => {
            let mut series = Vec::new();
            for input in &args.inputs {
                series.extend(plot::load_series(input)?);
            }
            let title = args
                .title
                .unwrap_or_else(|| "Latency by percentile".to_string());
            let (svg, png) = plot::plot(&args.output, &series, &title, args.linear)?;
            eprintln!("wrote {} and {}", svg.display(), png.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Fanout { .. }
        | Command::Rooms { .. }
        | Command::Connect { .. }
        | Command::Idle { .. } => Err(anyhow::anyhow!(
            "internal error: scenario command not recognized"
        )),
    }
}

/// Runs a scenario, prints its report, writes the requested files.
fn run_scenario(scenario: &Scenario, common: &CommonArgs) -> anyhow::Result<ExitCode> {
    let result = scenario::run(scenario, common)?;
    report::print_report(&result);
    report::write_files(&result, common.json.as_deref(), common.hgrm.as_deref())?;
    if let Some(path) = &common.plot {
        let title = format!("loadgen {} - latency by percentile", result.scenario);
        // A run without latencies (all lost) has nothing to draw; its failure is
        // already reported, so the chart is skipped with a note rather than an error.
        let series = plot::report_series(&result, None);
        match plot::plot(path, &series, &title, false) {
            Ok((svg, png)) => eprintln!("wrote {} and {}", svg.display(), png.display()),
            Err(e) => eprintln!("loadgen: no chart written to {}: {e:#}", path.display()),
        }
    }
    Ok(if result.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED_CHECK)
    })
}
