//! `levee`: the controller node and the operator's command line.

use std::process::ExitCode;

use clap::Parser;
use levee_common::telemetry::{self, LogFormat};
use levee_controller::cli::{self, Cli, LogFormatArg};

#[tokio::main]
async fn main() -> ExitCode {
    levee_common::tls::install_crypto_provider();
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    telemetry::init(format, "info,openraft=warn");
    match cli::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{}", cli::error_message(&err));
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
