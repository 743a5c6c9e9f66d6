//! Command line of tenant-gateway: parses arguments and calls into the library; no logic here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tenant-gateway",
    version,
    about = "Multi-tenant edge gateway on pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the `tenant new` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
        /// Take over the listening sockets of the running instance (zero-downtime upgrade).
        #[arg(long, short)]
        upgrade: bool,
        /// Once every listener is bound and the gateway is ready, write the bound addresses
        /// here as JSON (`{"http": [..], "https": [..], "admin": ".."}`); with port 0 in the
        /// config this is how to learn the ports.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
    /// Validate the whole config; print every error with file and key.
    Check {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
    },
    /// Create, suspend, activate or delete tenants (writes tenants/<id>.toml; the running
    /// gateway picks the change up by its file watch).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Custom domains.
    Domain {
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// API keys of tenants.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Print the JSON Schema of a config file kind (for editors: taplo / Even Better TOML).
    Schema {
        #[arg(value_enum)]
        file: SchemaFile,
    },
    /// A small whoami-style upstream: answers every request with JSON of what it received.
    Echo {
        #[arg(long, short, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaFile {
    /// gateway.toml
    Gateway,
    /// tenants/<id>.toml
    Tenant,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum TenantCommand {
    /// Write a new, validated tenant file.
    New {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
        #[command(flatten)]
        tenant: tenant_gateway::provision::NewTenant,
    },
    /// Set status = "suspended" (every request answers 403).
    Suspend {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Set status = "active".
    Activate {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Move the tenant file to tenants/.deleted/ (never destroyed).
    Delete {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum DomainCommand {
    /// Print the DNS TXT record that proves a tenant owns a domain.
    Token {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        domain: String,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Print a fresh random key and the lines to paste into the tenant file.
    New {
        #[arg(long)]
        tenant: String,
        /// Name of the key (shown in logs and the admin API).
        #[arg(long, default_value = "default")]
        name: String,
        /// A role of the key's holder (repeat for several): `--role admin --role billing`.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            upgrade,
            ready_file,
        } => {
            let opts = tenant_gateway::gateway::RunOptions {
                upgrade,
                ready_file,
            };
            match tenant_gateway::gateway::run(&config, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "tenant-gateway: cannot start with {}:\n{e}",
                        config.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => match tenant_gateway::config::load(&config) {
            Ok(valid) => {
                let snapshot = tenant_gateway::snapshot::Snapshot::compile(valid);
                println!(
                    "{}: ok ({} tenants, {} plans, {} routes)",
                    config.display(),
                    snapshot.hosts.len(),
                    snapshot.plans.len(),
                    snapshot.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} error(s)", config.display(), errors.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Tenant { command } => {
            use tenant_gateway::config::TenantStatus;
            use tenant_gateway::provision;
            // Provisioning hooks log their output and an audit line: show them on stderr.
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .try_init();
            let set_status = |config: &std::path::Path, id: &str, status, done: &str| {
                provision::set_status(config, id, status)
                    .map(|p| format!("{done} ({})", p.display()))
            };
            let result = match command {
                TenantCommand::New { config, tenant } => {
                    let created = provision::create(&config, tenant);
                    created.map(|p| format!("created {}", p.display()))
                }
                TenantCommand::Suspend { config, id } => {
                    set_status(&config, &id, TenantStatus::Suspended, "suspended")
                }
                TenantCommand::Activate { config, id } => {
                    set_status(&config, &id, TenantStatus::Active, "activated")
                }
                TenantCommand::Delete { config, id } => {
                    provision::delete(&config, &id).and_then(|p| {
                        provision::run_delete_hook(&config, &p)?;
                        Ok(format!("moved to {}", p.display()))
                    })
                }
            };
            match result {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Domain {
            command:
                DomainCommand::Token {
                    config,
                    tenant,
                    domain,
                },
        } => {
            let valid = match tenant_gateway::config::load(&config) {
                Ok(valid) => valid,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            let env = &valid.startup.acme.verification_secret_env;
            let Some(secret) = &valid.secrets.domain_verification else {
                eprintln!("domain token: set ${env} to the verification secret the gateway uses");
                return ExitCode::FAILURE;
            };
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !valid.tenants.iter().any(|t| t.id == tenant) {
                eprintln!(
                    "domain token: warning: no tenant {tenant:?} in {}",
                    config.display()
                );
            }
            println!("# Create this DNS record, then POST /admin/v1/domains/{domain}/verify:");
            println!(
                "{}",
                tenant_gateway::acme::domains::txt_record_line(secret, &tenant, &domain)
            );
            ExitCode::SUCCESS
        }
        Command::Apikey {
            command:
                ApikeyCommand::New {
                    tenant,
                    name,
                    roles,
                },
        } => match tenant_gateway::auth::new_api_key() {
            _ if roles
                .iter()
                .any(|r| !tenant_gateway::roles::is_valid_role(r)) =>
            {
                eprintln!("apikey: roles are 1 to 64 of A-Z a-z 0-9 - _ . : / ({roles:?})");
                ExitCode::FAILURE
            }
            Ok((key, hash)) => {
                println!("# API key for tenant {tenant:?}; it is shown once, store it now:");
                println!("{key}");
                println!();
                println!("# Append to tenants/{tenant}.toml (only the hash is stored):");
                println!("[[api_keys]]");
                println!("sha256 = \"{hash}\"");
                println!("name = {name:?}");
                if !roles.is_empty() {
                    let list: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
                    println!("roles = [{}]", list.join(", "));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("apikey: no randomness available: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Schema { file } => {
            use tenant_gateway::config::schema::{json_schema, SchemaKind};
            let kind = match file {
                SchemaFile::Gateway => SchemaKind::Gateway,
                SchemaFile::Tenant => SchemaKind::Tenant,
            };
            match serde_json::to_string_pretty(&json_schema(kind)) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("schema: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Echo { listen } => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("echo: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(tenant_gateway::echo::serve(listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("echo: {listen}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
