//! The `datagate` command: serve, check, demo, certs, and the operator tools
//! `message` and `globalconf` (docs/OPERATOR-TOOLS.md).

use clap::{ArgGroup, Args, Parser, Subcommand};
use datagate::base::clock::{Clock, SystemClock};
use datagate::msgsig::{Algorithm, Component};
use datagate::operator::{self, OperatorError, globalconf, message};
use datagate::trust::global::SigningAlg;
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc rather than glibc's allocator (decision 0013, issue 12): about a sixth of the
/// proxy path's user-space instructions were glibc's `malloc` and `free`, and glibc keeps
/// the pages of freed buffers (hibernated connections') resident, where jemalloc reuses
/// them by size class and returns what stays unused.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "datagate",
    version,
    about = "Data-integration gateway for LGSP/NDXP secure servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from its configuration file.
    Serve {
        /// Node configuration (TOML).
        #[arg(long, env = "DATAGATE_CONFIG")]
        config: PathBuf,
        /// Worker threads of the async runtime (default: the cores this process may run
        /// on). 1 runs a single-threaded scheduler.
        #[arg(long, env = "DATAGATE_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: Option<u16>,
    },
    /// Validate a configuration and every contract, registry entry and adapter; print every error.
    Check {
        /// Node configuration (TOML).
        #[arg(long, env = "DATAGATE_CONFIG")]
        config: PathBuf,
    },
    /// Run a complete local federation with synthetic data on 127.0.0.1.
    #[cfg(feature = "dev")]
    Demo {
        /// Where the demo writes its PKI, configuration, journal and demo.json.
        #[arg(long, default_value = "target/demo")]
        state_dir: PathBuf,
        /// The folder holding `contracts/` and `adapters/` (the repository root).
        #[arg(long, default_value = ".")]
        project_dir: PathBuf,
    },
    /// Generate the dev PKI (a dev CA standing in for Ban Cơ yếu, gateway and client certificates).
    #[cfg(feature = "dev")]
    Certs {
        /// Output folder.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Sign, verify, encrypt or decrypt a message (HTTP/1.1 request or payload on stdin).
    Message {
        #[command(subcommand)]
        command: MessageCommand,
    },
    /// Sign or verify the federation's global configuration.
    Globalconf {
        #[command(subcommand)]
        command: GlobalconfCommand,
    },
    /// Check the node's journal offline.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Verify the journal's hash chain: every record's hash against its content and its
    /// link to the record before. Exit 0 when intact; otherwise 1, naming the first bad
    /// record (sequence number and X-Road-Id).
    Verify {
        /// Node configuration (TOML): its `[journal] path`.
        #[arg(long, env = "DATAGATE_CONFIG", conflicts_with_all = ["journal", "bundle"])]
        config: Option<PathBuf>,
        /// Or the journal itself: a SQLite file (a copy, on another machine) or a
        /// `postgres://` URL.
        #[arg(long, conflicts_with = "bundle")]
        journal: Option<String>,
        /// With a `postgres://` journal: its schema.
        #[arg(long, default_value = "datagate")]
        schema: String,
        /// With `--journal`: the directory of its archive files.
        #[arg(long)]
        archive_dir: Option<PathBuf>,
        /// The TSA's CA certificates (PEM): time-stamp tokens are then verified fully
        /// (signature, chain), not only their imprint. With `--config`, the configured ones.
        #[arg(long)]
        tsa_ca: Option<PathBuf>,
        /// Or an evidence bundle written by `journal export`: checked with nothing else.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Check only records received from this time on (RFC 3339, UTC), and their seals.
        #[arg(long, requires = "to", conflicts_with = "bundle")]
        from: Option<String>,
        /// ... up to this time (exclusive).
        #[arg(long, requires = "from")]
        to: Option<String>,
    },
    /// Compare two nodes' bundles of the same period (the consumer's and the provider's
    /// side): list exchanges missing on one side, status and signature mismatches. Exit 0
    /// when they agree, 1 otherwise.
    Reconcile {
        /// The first node's bundle (`journal export --from --to`).
        a: PathBuf,
        /// The second node's bundle of the same period.
        b: PathBuf,
    },
    /// Run archiving and retention now, on a stopped node (a running node does it by
    /// itself between batches, and holds the journal's writer lock): sealed batches past
    /// `archive_after_days` go to gzip archive files, archives past `retention_days` are
    /// deleted. Exit 0 with what was done.
    Archive {
        /// Node configuration (TOML): its `[journal]`.
        #[arg(long, env = "DATAGATE_CONFIG")]
        config: PathBuf,
    },
    /// Write an evidence bundle: the records of one exchange (or a time range), their
    /// inclusion proofs, their seals and the signing certificate.
    Export {
        /// Node configuration (TOML): its `[journal] path`.
        #[arg(long, env = "DATAGATE_CONFIG", conflicts_with = "journal")]
        config: Option<PathBuf>,
        /// Or the journal itself: a SQLite file or a `postgres://` URL.
        #[arg(long)]
        journal: Option<String>,
        /// With a `postgres://` journal: its schema.
        #[arg(long, default_value = "datagate")]
        schema: String,
        /// The exchange's X-Road-Id.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        x_road_id: Option<String>,
        /// Start of a time range (RFC 3339, UTC), inclusive.
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// End of a time range (RFC 3339, UTC), exclusive.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Where to write the bundle (JSON).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum MessageCommand {
    /// Add Content-Digest, Signature-Input and Signature (RFC 9421, RFC 9530) to the
    /// HTTP/1.1 request on stdin; write it to stdout.
    Sign {
        /// Private key: PEM (PKCS#8, SEC1, PKCS#1, encrypted) or PKCS#12.
        #[arg(long)]
        key: PathBuf,
        /// The keyid parameter (by convention the certificate's SHA-256 fingerprint).
        #[arg(long)]
        key_id: String,
        /// ecdsa-p256-sha256, rsa-pss-sha512, rsa-v1_5-sha256 or ed25519 [default: the key's].
        #[arg(long)]
        alg: Option<Algorithm>,
        #[command(flatten)]
        password: PasswordArg,
        /// Signature label.
        #[arg(long, default_value = message::DEFAULT_LABEL)]
        label: String,
        /// expires = created + this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = message::DEFAULT_EXPIRES_IN_SECS)]
        expires_in: u32,
        /// The created parameter, in UNIX seconds [default: now].
        #[arg(long, value_name = "UNIX")]
        created: Option<i64>,
        /// Covered components, replacing the default (@method @target-uri content-digest
        /// and the X-Road headers present).
        #[arg(long, value_name = "COMPONENT", num_args = 1.., value_parser = component)]
        cover: Option<Vec<Component>>,
    },
    /// Verify the signature and Content-Digest of the signed HTTP/1.1 request on stdin.
    #[command(group(ArgGroup::new("signer").required(true).args(["cert", "key"])))]
    Verify {
        /// The signer's certificate (PEM).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The signer's public key (PEM PUBLIC KEY).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The one algorithm accepted [default: the key's; for RSA, the RSA one `alg` names].
        #[arg(long)]
        alg: Option<Algorithm>,
        /// Signature label.
        #[arg(long, default_value = message::DEFAULT_LABEL)]
        label: String,
        /// The oldest created accepted, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = message::DEFAULT_MAX_AGE_SECS)]
        max_age: u32,
        /// Clock difference tolerated with the signer, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = message::DEFAULT_MAX_SKEW_SECS)]
        max_skew: u32,
        /// Components that must be covered, replacing the default (@method @target-uri
        /// content-digest x-road-client x-road-id and the optional X-Road headers present).
        #[arg(long, value_name = "COMPONENT", num_args = 1.., value_parser = component)]
        require: Option<Vec<Component>>,
    },
    /// Encrypt stdin as a JWE compact serialisation (stdout) to a gateway's key.
    Encrypt {
        /// The recipient: a PEM certificate or public key, or a public JWK (JSON).
        #[arg(long)]
        to: PathBuf,
        /// The kid header [default: the certificate's SHA-256 fingerprint, or the JWK's kid].
        #[arg(long)]
        kid: Option<String>,
        /// The cty header.
        #[arg(long, value_name = "TYPE")]
        cty: Option<String>,
    },
    /// Decrypt the JWE compact serialisation on stdin; write the plaintext to stdout.
    Decrypt {
        /// Private key: PEM (PKCS#8, SEC1, PKCS#1, encrypted) or PKCS#12.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        password: PasswordArg,
    },
}

#[derive(Subcommand)]
enum GlobalconfCommand {
    /// Validate the payload JSON on stdin and sign it as a JWS compact serialisation (stdout).
    Sign {
        /// The authority's private key (EC P-256 or RSA ≥ 2048): PEM or PKCS#12.
        #[arg(long)]
        key: PathBuf,
        /// ES256 or RS256 [default: the key's].
        #[arg(long, value_parser = signing_alg)]
        alg: Option<SigningAlg>,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// Verify the signed global configuration on stdin as a gateway would, now.
    Verify {
        /// The anchor: the authority's public key or certificate (PEM), or a public JWK.
        #[arg(long)]
        anchor: PathBuf,
        /// The federation instance, e.g. VN.
        #[arg(long, value_name = "VN")]
        instance: String,
        /// The signed configuration held: the new one must be newer (or the same).
        #[arg(long, value_name = "HELD.jws")]
        held: Option<PathBuf>,
    },
}

/// The password of an encrypted key, by the name of the variable that holds it:
/// never on the command line, where other users' `ps` would show it.
#[derive(Args)]
struct PasswordArg {
    /// The environment variable holding the key's password.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
}

fn component(text: &str) -> Result<Component, String> {
    Component::parse(text).map_err(|e| e.to_string())
}

fn signing_alg(text: &str) -> Result<SigningAlg, String> {
    SigningAlg::from_header(text).ok_or_else(|| "expected ES256 or RS256".to_owned())
}

/// Exit code for an invalid configuration (EX_CONFIG would be 78; 64 is EX_USAGE as STYLE.md asks).
const EXIT_INVALID_CONFIG: u8 = 64;

fn main() -> ExitCode {
    datagate::observe::init_tracing();
    datagate::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        // The operator tools run to completion on files and stdin: no runtime.
        Command::Message { command } => finish(run_message(command)),
        Command::Globalconf { command } => finish(run_globalconf(command)),
        Command::Journal {
            command:
                JournalCommand::Verify {
                    bundle: Some(bundle),
                    ..
                },
        } => verify_bundle(&bundle),
        Command::Journal {
            command:
                JournalCommand::Verify {
                    config,
                    journal,
                    schema,
                    archive_dir,
                    tsa_ca,
                    from,
                    to,
                    ..
                },
        } => verify_journal(config, journal, &schema, archive_dir, tsa_ca, from.zip(to)),
        Command::Journal {
            command: JournalCommand::Reconcile { a, b },
        } => reconcile_journals(&a, &b),
        Command::Journal {
            command: JournalCommand::Archive { config },
        } => archive_journal(&config),
        Command::Journal {
            command:
                JournalCommand::Export {
                    config,
                    journal,
                    schema,
                    x_road_id,
                    from,
                    to,
                    out,
                },
        } => export_journal(config, journal, &schema, x_road_id, from.zip(to), &out),
        Command::Check { config } => match datagate::config::load(&config) {
            Ok(loaded) => {
                let forms = if loaded.forms.is_empty() {
                    String::new()
                } else {
                    format!(", {} forms", loaded.forms.len())
                };
                println!(
                    "configuration valid: {} contracts, {} adapters, {} services, {} registrations{forms}",
                    loaded.contracts.len(),
                    loaded.adapters.len(),
                    loaded.services.len(),
                    loaded.registry.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("invalid configuration: {} error(s)", errors.len());
                for error in &errors {
                    eprintln!("  {error}");
                }
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        },
        Command::Serve { config, workers } => {
            let loaded = match datagate::config::load(&config) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    eprintln!("invalid configuration: {} error(s)", errors.len());
                    for error in &errors {
                        eprintln!("  {error}");
                    }
                    return ExitCode::from(EXIT_INVALID_CONFIG);
                }
            };
            block_on_workers(
                datagate::gateway::server::serve(loaded),
                workers.map(usize::from),
            )
        }
        #[cfg(feature = "dev")]
        Command::Demo {
            state_dir,
            project_dir,
        } => block_on_workers(datagate::demo::run(&project_dir, &state_dir), None),
        #[cfg(feature = "dev")]
        Command::Certs { dir } => match datagate::pki::write_dev_pki(&dir) {
            Ok(pki) => {
                println!("dev PKI written to {} (not for production)", dir.display());
                let journal_key = dir.join("journal.key");
                match datagate::journal::load_or_create_key(&journal_key) {
                    Ok(_) => println!(
                        "  journal key: {} (keep it; every replica of the node needs the same)",
                        journal_key.display()
                    ),
                    Err(error) => {
                        eprintln!("cannot write the journal key: {error}");
                        return ExitCode::FAILURE;
                    }
                }
                for client in &pki.clients {
                    println!(
                        "  {}: {} sha256={}",
                        client.name,
                        client.cert.display(),
                        client.fingerprint_sha256
                    );
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot write the dev PKI: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs a node's future on `workers` threads, or as many as the cores it may run on.
fn block_on_workers(
    future: impl std::future::Future<Output = anyhow::Result<()>>,
    workers: Option<usize>,
) -> ExitCode {
    // One core available (e.g. pinned with taskset or a 1-CPU container): a single-threaded
    // scheduler avoids cross-thread wake-ups that buy nothing there.
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    match builder.enable_all().build() {
        Ok(runtime) => report(runtime.block_on(future)),
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_message(command: MessageCommand) -> Result<(), OperatorError> {
    let (stdin, stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    match command {
        MessageCommand::Sign {
            key,
            key_id,
            alg,
            password,
            label,
            expires_in,
            created,
            cover,
        } => {
            let created = match created {
                Some(unix) => time::OffsetDateTime::from_unix_timestamp(unix)
                    .map_err(|_| OperatorError::Usage("--created is out of range".to_owned()))?,
                None => SystemClock.now(),
            };
            let options = message::SignOptions {
                key,
                password: operator::password_from_env(password.password_env.as_deref())?,
                key_id,
                alg,
                label,
                expires_in_secs: expires_in,
                cover,
                created,
            };
            message::sign(stdin, stdout, &options)
        }
        MessageCommand::Verify {
            cert,
            key,
            alg,
            label,
            max_age,
            max_skew,
            require,
        } => {
            let key = match (cert, key) {
                (Some(cert), _) => message::VerifyKey::Certificate(cert),
                (None, Some(key)) => message::VerifyKey::PublicKey(key),
                (None, None) => {
                    return Err(OperatorError::Usage(
                        "--cert or --key is required".to_owned(),
                    ));
                }
            };
            let options = message::VerifyOptions {
                key,
                alg,
                label,
                max_age_secs: max_age,
                max_skew_secs: max_skew,
                require,
                now: SystemClock.now(),
            };
            let report = message::verify(stdin, &options)?;
            println!("{report}");
            Ok(())
        }
        MessageCommand::Encrypt { to, kid, cty } => {
            let options = message::EncryptOptions {
                to,
                kid,
                content_type: cty,
            };
            message::encrypt(stdin, stdout, &options)
        }
        MessageCommand::Decrypt { key, password } => {
            let options = message::DecryptOptions {
                key,
                password: operator::password_from_env(password.password_env.as_deref())?,
            };
            message::decrypt(stdin, stdout, &options)
        }
    }
}

fn run_globalconf(command: GlobalconfCommand) -> Result<(), OperatorError> {
    let (stdin, stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    match command {
        GlobalconfCommand::Sign { key, alg, password } => {
            let options = globalconf::SignOptions {
                key,
                password: operator::password_from_env(password.password_env.as_deref())?,
                alg,
            };
            globalconf::sign(stdin, stdout, &options)
        }
        GlobalconfCommand::Verify {
            anchor,
            instance,
            held,
        } => {
            let options = globalconf::VerifyOptions {
                anchor,
                instance,
                held,
                now: SystemClock.now(),
            };
            let report = globalconf::verify(stdin, &options)?;
            println!("{report}");
            Ok(())
        }
    }
}

/// Exit 0, or 1 with the stable code first on stderr (then the message, which names
/// files, fields and components, never key material or header values).
/// The journal named by `--journal` (a SQLite file or a `postgres://` URL with
/// `--schema`), or by the configuration's `[journal]`; with its archive directory.
/// What `journal verify` and `export` read: where, its archive directory and its TSA's
/// CA file.
type JournalTarget = (
    datagate::journal::store::Locator,
    Option<PathBuf>,
    Option<PathBuf>,
);

fn journal_locator(
    config: Option<PathBuf>,
    journal: Option<String>,
    schema: &str,
    archive_dir: Option<PathBuf>,
) -> Result<JournalTarget, ExitCode> {
    use datagate::journal::store::{Locator, PgLocation};
    match (config, journal) {
        (_, Some(journal))
            if journal.starts_with("postgres://") || journal.starts_with("postgresql://") =>
        {
            if !datagate::journal::store::valid_schema(schema) {
                eprintln!("usage.invalid: --schema must be a lowercase SQL identifier");
                return Err(ExitCode::from(2));
            }
            Ok((
                Locator::Postgres(PgLocation {
                    url: journal,
                    schema: schema.to_owned(),
                    chain: None,
                }),
                archive_dir,
                None,
            ))
        }
        (_, Some(journal)) => Ok((Locator::Sqlite(PathBuf::from(journal)), archive_dir, None)),
        (Some(config), None) => match datagate::config::load(&config) {
            Ok(loaded) => {
                let dir = loaded
                    .journal
                    .archive
                    .as_ref()
                    .and_then(|policy| policy.dir.clone());
                let tsa = loaded.journal.tsa.as_ref().map(|t| t.roots_file.clone());
                Ok((loaded.journal.locator, archive_dir.or(dir), tsa))
            }
            Err(errors) => {
                for error in &errors {
                    eprintln!("invalid configuration: {error}");
                }
                Err(ExitCode::from(EXIT_INVALID_CONFIG))
            }
        },
        (None, None) => {
            eprintln!("usage.invalid: give --config FILE or --journal FILE|URL");
            Err(ExitCode::from(2))
        }
    }
}

/// `datagate journal verify --bundle`.
fn verify_bundle(bundle: &std::path::Path) -> ExitCode {
    let bytes = match std::fs::read(bundle) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("input.unreadable: {}: {error}", bundle.display());
            return ExitCode::FAILURE;
        }
    };
    match datagate::journal::bundle::verify_bundle(&bytes) {
        Ok(records) => {
            println!("bundle intact: {records} records, each included in its signed seal");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("journal.bundle_broken: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `datagate journal reconcile A B`.
fn reconcile_journals(a: &std::path::Path, b: &std::path::Path) -> ExitCode {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|error| {
            eprintln!("input.unreadable: {}: {error}", path.display());
            ExitCode::FAILURE
        })
    };
    let (bytes_a, bytes_b) = match (read(a), read(b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let report = match datagate::journal::reconcile::reconcile(&bytes_a, &bytes_b) {
        Ok(report) => report,
        Err((side, error)) => {
            eprintln!("journal.bundle_broken: bundle {side}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "reconciled: {} exchanges agree; {} only in A; {} only in B; {} status mismatches; {} signature mismatches",
        report.matched.len(),
        report.only_in_a.len(),
        report.only_in_b.len(),
        report.status_mismatches.len(),
        report.signature_mismatches.len()
    );
    for (id, leg) in &report.only_in_a {
        println!("only in A: {id} (leg {}, status {})", leg.leg, leg.status);
    }
    for (id, leg) in &report.only_in_b {
        println!("only in B: {id} (leg {}, status {})", leg.leg, leg.status);
    }
    for (id, left, right) in &report.status_mismatches {
        println!(
            "status mismatch: {id}: A {} ({}), B {} ({})",
            left.status, left.leg, right.status, right.leg
        );
    }
    for (id, left, right) in &report.signature_mismatches {
        println!(
            "signature mismatch: {id}: A ({}) and B ({}) recorded different signatures",
            left.leg, right.leg
        );
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `datagate journal export`.
fn export_journal(
    config: Option<PathBuf>,
    journal: Option<String>,
    schema: &str,
    x_road_id: Option<String>,
    range: Option<(String, String)>,
    out: &std::path::Path,
) -> ExitCode {
    let (locator, _, _) = match journal_locator(config, journal, schema, None) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let selection = match (x_road_id, range) {
        (Some(id), _) => datagate::journal::bundle::Selection::MessageId(id),
        (None, Some((from, to))) => datagate::journal::bundle::Selection::Range { from, to },
        (None, None) => {
            eprintln!("usage.invalid: give --x-road-id ID or --from T --to T");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = command_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(datagate::journal::bundle::export(&locator, &selection)) {
        Ok(bundle) if bundle.records.is_empty() => {
            eprintln!("journal.not_found: no sealed record matches");
            ExitCode::FAILURE
        }
        Ok(bundle) => match serde_json::to_vec_pretty(&bundle)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(out, json))
        {
            Ok(()) => {
                println!(
                    "bundle written: {} records, {} seals → {}",
                    bundle.records.len(),
                    bundle.seals.len(),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("output.failed: {}: {error}", out.display());
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("journal.unreadable: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The one-thread runtime of an offline command (`None`, said on stderr, if it cannot start).
fn command_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            None
        }
    }
}

/// `datagate journal archive`.
fn archive_journal(config: &std::path::Path) -> ExitCode {
    use datagate::journal::archive::Step;
    use datagate::journal::store::Locator;
    let loaded = match datagate::config::load(config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors {
                eprintln!("invalid configuration: {error}");
            }
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    let Some(policy) = loaded.journal.archive.clone() else {
        eprintln!(
            "usage.invalid: [journal] sets neither archive_dir nor retention_days: nothing to do"
        );
        return ExitCode::from(2);
    };
    let Some(runtime) = command_runtime() else {
        return ExitCode::FAILURE;
    };
    let now = || datagate::base::clock::Clock::now(&datagate::base::clock::SystemClock);
    let mut progress = datagate::operator::progress::Progress::new("archived");
    let (mut archived, mut expired) = (0i64, 0i64);
    let mut record = |step: &Step, progress: &mut datagate::operator::progress::Progress| match step
    {
        Step::Archive(entry) if entry.expired_at.is_none() => {
            archived += entry.last_seq - entry.first_seq + 1;
            progress.at("", entry.last_seq);
        }
        Step::Archive(entry) | Step::Expire(entry) => {
            expired += entry.last_seq - entry.first_seq + 1;
            progress.at("", entry.last_seq);
        }
    };
    let outcome: Result<(), datagate::journal::JournalError> = runtime.block_on(async {
        match &loaded.journal.locator {
            Locator::Sqlite(path) => {
                let mut store = datagate::journal::sqlite::SqliteJournal::open(path).await?;
                while let Some(step) = store.maintain_step(&policy, now()).await? {
                    record(&step, &mut progress);
                }
            }
            Locator::Postgres(location) => {
                let mut store =
                    datagate::journal::postgres::PgJournal::open(location.clone()).await?;
                while let Some(step) = store.maintain_step(&policy, now()).await? {
                    record(&step, &mut progress);
                }
            }
        }
        Ok(())
    });
    progress.finish();
    match outcome {
        Ok(()) => {
            println!(
                "journal archived: {archived} records moved to archive files, {expired} records gone by retention"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("journal.unavailable: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `datagate journal verify`.
fn verify_journal(
    config: Option<PathBuf>,
    journal: Option<String>,
    schema: &str,
    archive_dir: Option<PathBuf>,
    tsa_ca: Option<PathBuf>,
    range: Option<(String, String)>,
) -> ExitCode {
    use datagate::journal::verify::{Summary, Verification};
    let (locator, archive_dir, configured_tsa) =
        match journal_locator(config, journal, schema, archive_dir) {
            Ok(found) => found,
            Err(code) => return code,
        };
    let tsa_roots = match tsa_ca.or(configured_tsa) {
        Some(file) => match datagate::journal::stamper::load_roots(&file) {
            Ok(roots) => Some(roots),
            Err(error) => {
                eprintln!("input.unreadable: {error}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let Some(runtime) = command_runtime() else {
        return ExitCode::FAILURE;
    };
    let mut progress = datagate::operator::progress::Progress::new("verified");
    let outcome = runtime.block_on(datagate::journal::verify::verify(
        &locator,
        range,
        archive_dir.as_deref(),
        tsa_roots.as_deref(),
        &mut |chain, seq| progress.at(chain, seq),
    ));
    progress.finish();
    match outcome {
        Ok(Verification::Intact(Summary {
            chains,
            chained,
            seals,
            unsealed,
            unchained,
            archived,
            expired,
            timestamped,
            head,
        })) => {
            println!(
                "journal intact: {chained} chained records ({archived} from archives) in {seals} signed seals ({timestamped} time-stamped) over {chains} chain(s); {unsealed} not yet sealed, {unchained} written before the chain, {expired} gone by retention; head {}",
                head.as_deref().unwrap_or("none")
            );
            ExitCode::SUCCESS
        }
        Ok(Verification::Broken {
            chain,
            seq,
            message_id,
            reason,
        }) => {
            eprintln!(
                "journal.broken: first bad record: chain {chain}, seq {seq}, X-Road-Id {message_id}: {reason}"
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("journal.unreadable: {error}");
            ExitCode::FAILURE
        }
    }
}

fn finish(outcome: Result<(), OperatorError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {error}", error.code());
            for detail in error.details() {
                eprintln!("  {detail}");
            }
            ExitCode::FAILURE
        }
    }
}

fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
