//! The command-line grammar. Doc comments here are the `--help` text.

#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tio_store::{EngineKind, IndexEngine, StoreOptions};

use crate::connection::ConnectionArgs;

/// Tell It Once: a consented, audited broker for updates about children with special
/// educational needs and disabilities, between NHS, school and council systems.
#[derive(Debug, Parser)]
#[command(name = "tio", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the broker server (mutual TLS, gRPC).
    ///
    /// Configuration layers, lowest precedence first: built-in defaults, --config FILE,
    /// TIO_* environment variables, then flags. `tio serve gen-config` prints a
    /// commented default configuration.
    Serve(ServeArgs),
    /// Write a throwaway development CA and certificates (server, admin, auditor and
    /// one per development agency) into a directory. Keys are written mode 0600.
    DevPki(DevPkiArgs),
    /// Ask a broker's standard gRPC health service whether it is serving.
    Health(HealthArgs),
    /// Manage the key ring: create it, rotate the key-encryption key, retire old versions.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check, back up and restore a store: backups of a running server through its
    /// admin service, or of a stopped store with --data-dir; checks and restores on a
    /// stopped store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Publish the new whole value of one category for one child (agency certificate).
    Publish(PublishArgs),
    /// Correct one of this agency's updates with a new value; every agency that was
    /// given the update is sent the correction.
    Correct(CorrectArgs),
    /// Retract one of this agency's updates, entered in error; every agency that was
    /// given it is told.
    Retract(RetractArgs),
    /// Read a child's profile: the latest value of each category this agency may see now.
    Profile(ProfileArgs),
    /// Record, withdraw and show a family's consent (agency certificate).
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Declare, end and list this agency's care relationships with a child.
    #[command(subcommand)]
    Relationship(RelationshipCommand),
    /// Receive deliveries on a subscription, printed as JSON lines and acknowledged.
    Subscribe(SubscribeArgs),
    /// Safeguarding shares: sharing without consent where a child may be at risk
    /// (agencies permitted to declare them).
    #[command(subcommand)]
    Safeguarding(SafeguardingCommand),
    /// EHC needs assessments on their statutory clocks: opened and run by the SEND
    /// team, answered by the agencies asked for advice.
    #[command(subcommand)]
    Ehc(EhcCommand),
    /// A young person's transition to adult services, 14 to 25: opened by the SEND team,
    /// its milestones recorded by their owners.
    #[command(subcommand)]
    Transition(TransitionCommand),
    /// Alerts: an agency's own (a child-protection flag it published was read, ...),
    /// or every alert with an auditor's or admin's certificate.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Tell the Tell It Once story end to end against a real server, checking every
    /// outcome: by default on its own server on a loopback port.
    Demo(DemoArgs),
    /// Measure throughput and latency against a real server over mutual TLS: by default
    /// a fresh development server per scenario, on a loopback port with a temporary data
    /// directory. Build with --release for meaningful figures.
    Bench(BenchArgs),
    /// The auditor's console: a web application over the broker's audit log, itself a
    /// client of the broker with an auditor's (or admin's) certificate. Prints its
    /// address and a one-time sign-in link (a new one each time one is used); listens
    /// on loopback unless given TLS files; stops on Ctrl-C.
    Console(ConsoleArgs),
    /// Administer the agency registry (admin certificate): register, update, suspend,
    /// reinstate and list agencies, and revoke certificates.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log: query it, export it, verify an export offline, print the
    /// checkpoint key, and report on one child for a subject-access request.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Reports of counts only (admins, auditors, SEND teams).
    #[command(subcommand)]
    Report(ReportCommand),
}

/// `tio console`.
#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    /// Where the console listens (port 0 picks one). Any address other than loopback
    /// needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// The log's public key you keep (as `tio audit public-key` prints it), to verify
    /// checkpoints against; without it the console trusts the broker's, and says so.
    #[arg(long, value_name = "FILE")]
    pub(crate) public_key: Option<std::path::PathBuf>,
    /// Try it at once: start a development server of its own, tell the `tio demo`
    /// story against it so that the log has something in it, and open the console on
    /// it as the development auditor.
    #[arg(long, conflicts_with_all = ["server", "dev_pki", "cert", "key", "ca"])]
    pub(crate) dev: bool,
    /// With --dev: keep the development server's data here (a temporary directory,
    /// removed afterwards, if not given).
    #[arg(long, value_name = "DIR", requires = "dev")]
    pub(crate) data_dir: Option<std::path::PathBuf>,
    /// How to reach the broker (an auditor's or admin's certificate). The console asks
    /// each person their name at sign-in and sends it as the professional on their
    /// calls, so the audit log records who looked; --professional is not used.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio report`.
#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// The partnership's SEND measures by month: assessments opened, decisions within 6
    /// weeks, plans within 20 weeks, exceptions, advice turnaround, and young people of
    /// 17 and over with no adult-services referral. Counts only; any figure resting on
    /// 1 to 4 children is withheld (shown `<5`).
    Send {
        /// The first month, e.g. 2026-01 (11 months before --to if not given).
        #[arg(long, value_name = "YYYY-MM")]
        from: Option<String>,
        /// The last month (this month if not given).
        #[arg(long, value_name = "YYYY-MM")]
        to: Option<String>,
        /// Admins and auditors: one SEND team's assessments only.
        #[arg(long, value_name = "AGENCY")]
        run_by: Option<String>,
        /// Output: a table to read, or CSV for spreadsheets.
        #[arg(long, value_enum, default_value_t = MetricsFormat::Table)]
        format: MetricsFormat,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// How `tio report send` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MetricsFormat {
    /// Readable tables.
    Table,
    /// Comma-separated values with a header row: measure, month, breakdown, value.
    Csv,
}

/// `tio audit`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Query a broker's audit log (admin or auditor certificate): entries matching every
    /// filter given, oldest first.
    Query(AuditQueryArgs),
    /// Export a broker's whole audit log (admin or auditor certificate) into a new
    /// directory: DIR/entries.jsonl, one entry per line in log order, and DIR/checkpoint,
    /// the signed checkpoint covering them. Check it with `tio audit verify DIR`.
    Export {
        /// The directory to write into; created if absent, must not hold an export.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Print a broker's latest signed checkpoint (admin or auditor certificate). Keep it:
    /// `tio audit verify --against` proves later exports extend it.
    Checkpoint {
        /// Write it to this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// The subject-access report for one child (admin or auditor certificate): every
    /// access, sharing and refusal, with when, which agency and professional, what
    /// information and why. Times are shown in the local time zone.
    Report(AuditReportArgs),
    /// Print the audit log's checkpoint verifier key (signed-note format) on stdout and
    /// its SHA-256 fingerprint on stderr: from a running broker (admin or auditor
    /// certificate), or from the key ring with --keys-file. Compare the fingerprint with
    /// the one your deployment published before trusting a key fetched from a server.
    PublicKey {
        /// Read the key from this key ring instead of asking the broker.
        #[arg(long, env = "TIO_KEYS_FILE", value_name = "FILE")]
        keys_file: Option<PathBuf>,
        /// How to reach the broker (without --keys-file).
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Verify an export offline (no server needed): every entry against its leaf hash, the
    /// tree against the signed checkpoint, and with --against an older checkpoint, that
    /// the log extends it (a log cut back, rolled back or forked fails). Names the first
    /// bad entry and exits 1 on any failure.
    Verify {
        /// The export directory: entries.jsonl and checkpoint.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The log's verifier key (as printed by `tio audit public-key`), in a file.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// An older checkpoint you hold (a signed note, in a file).
        #[arg(long, value_name = "CHECKPOINT")]
        against: Option<PathBuf>,
    },
}

/// `tio publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The child's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// The category, e.g. communication_needs.
    #[arg(long, value_name = "CATEGORY")]
    pub(crate) category: String,
    /// The value as JSON (the category's message, protobuf JSON mapping), from a file or
    /// `-` for stdin, e.g. {"how_i_communicate": "Makaton signs"}.
    #[arg(long, value_name = "FILE")]
    pub(crate) value: std::path::PathBuf,
    /// A key unique to this update, so a retry is not stored twice (a UUID is ideal).
    /// Left out, a new one is made and printed on stderr.
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,
    /// Your own reference for the record (case or episode id).
    #[arg(long, default_value = "", value_name = "REF")]
    pub(crate) source_reference: String,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio correct`.
#[derive(Debug, Args)]
pub(crate) struct CorrectArgs {
    /// The child's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// The update to correct (its id, as `tio publish` printed it).
    #[arg(long, value_name = "UPDATE_ID")]
    pub(crate) update_id: String,
    /// The category, which must be the update's, e.g. health_summary.
    #[arg(long, value_name = "CATEGORY")]
    pub(crate) category: String,
    /// The whole corrected value as JSON, from a file or `-` for stdin (as for `tio publish`).
    #[arg(long, value_name = "FILE")]
    pub(crate) value: std::path::PathBuf,
    /// Why, in words the receiving agencies' staff can act on (sent to them, sealed at rest).
    #[arg(long)]
    pub(crate) reason: String,
    /// Your own reference for the correction.
    #[arg(long, default_value = "", value_name = "REF")]
    pub(crate) source_reference: String,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio retract`.
#[derive(Debug, Args)]
pub(crate) struct RetractArgs {
    /// The child's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// The update to retract (its id, as `tio publish` printed it).
    #[arg(long, value_name = "UPDATE_ID")]
    pub(crate) update_id: String,
    /// Why it was entered in error (sent to the agencies told, sealed at rest).
    #[arg(long)]
    pub(crate) reason: String,
    /// Your own reference for the retraction.
    #[arg(long, default_value = "", value_name = "REF")]
    pub(crate) source_reference: String,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio profile`.
#[derive(Debug, Args)]
pub(crate) struct ProfileArgs {
    /// The child's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// Only these categories, comma-separated (default all).
    #[arg(long, value_name = "CATEGORIES", value_delimiter = ',')]
    pub(crate) categories: Vec<String>,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio consent`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCommand {
    /// Record a consent given by a parent, the young person or a competent child.
    Record(ConsentRecordArgs),
    /// Withdraw a consent: in force at once, including for updates already queued.
    Withdraw {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// The consent's id.
        #[arg(long, value_name = "ID")]
        consent_id: String,
        /// Why, in the family's words.
        #[arg(long, default_value = "")]
        reason: String,
        /// How the withdrawal was given.
        #[command(flatten)]
        evidence: EvidenceArgs,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Record a family's objection to an agency, a sector or a category: while it
    /// stands, nothing it covers is shared, whatever a consent says.
    Object(ObjectArgs),
    /// Withdraw an objection: what it refused may flow again from now, if a consent
    /// allows it.
    WithdrawObjection {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// The objection's id (o-1, o-2, ...).
        #[arg(long, value_name = "ID")]
        objection_id: String,
        /// Why, in the family's words.
        #[arg(long, default_value = "")]
        reason: String,
        /// How the withdrawal was given.
        #[command(flatten)]
        evidence: EvidenceArgs,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Show a child's objections, standing and withdrawn, in the order they were raised.
    Objections {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Show a child's consents, or every revision of one with --consent-id.
    Show {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// One consent's revisions.
        #[arg(long, value_name = "ID")]
        consent_id: Option<String>,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// `tio consent record`.
#[derive(Debug, Args)]
pub(crate) struct ConsentRecordArgs {
    /// The child's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// Who gave it: parent, local-authority (holding parental responsibility under a
    /// care order), young-person, competent-child, best-interests (a Mental Capacity
    /// Act decision), deputy or attorney.
    #[arg(long, value_name = "ROLE")]
    pub(crate) giver_role: String,
    /// Their name as they gave it (encrypted at rest).
    #[arg(long, value_name = "NAME")]
    pub(crate) giver_name: String,
    /// For competent-child and best-interests: who judged competence, or made the
    /// decision (with --authority-on).
    #[arg(long, value_name = "NAME", requires = "authority_on")]
    pub(crate) authority_by: Option<String>,
    /// The day of that assessment or decision (e.g. 2026-11-30).
    #[arg(long, value_name = "DATE", requires = "authority_by")]
    pub(crate) authority_on: Option<String>,
    /// Categories it covers, comma-separated.
    #[arg(long, value_name = "CATEGORIES", value_delimiter = ',', required = true)]
    pub(crate) categories: Vec<String>,
    /// Recipient agencies, comma-separated.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub(crate) agencies: Vec<String>,
    /// Recipient sectors, comma-separated: health, education, social-care,
    /// adult-social-care, icb.
    #[arg(long, value_name = "SECTORS", value_delimiter = ',')]
    pub(crate) sectors: Vec<String>,
    /// Agencies excluded, whatever the lists above say.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub(crate) exclude: Vec<String>,
    /// Why the information is shared, in plain words.
    #[arg(long)]
    pub(crate) purpose: String,
    /// The lawful basis: consent, legal-obligation, vital-interests or public-task.
    #[arg(long, value_name = "BASIS")]
    pub(crate) lawful_basis: String,
    /// For health or social-care information, the Article 9 condition:
    /// explicit-consent, vital-interests, health-or-social-care or
    /// substantial-public-interest.
    #[arg(long, value_name = "CONDITION")]
    pub(crate) special_category_condition: Option<String>,
    /// When it ends (a date or an RFC 3339 time); open-ended if not given.
    #[arg(long, value_name = "TIME")]
    pub(crate) valid_until: Option<String>,
    /// How it was given.
    #[command(flatten)]
    pub(crate) evidence: EvidenceArgs,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio consent object`.
#[derive(Debug, Args)]
pub(crate) struct ObjectArgs {
    /// The child's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// Who objects: parent, young-person or competent-child.
    #[arg(long, value_name = "ROLE")]
    pub(crate) giver_role: String,
    /// Their name as they gave it (encrypted at rest).
    #[arg(long, value_name = "NAME")]
    pub(crate) giver_name: String,
    /// Categories objected to, comma-separated; every category if not given.
    #[arg(long, value_name = "CATEGORIES", value_delimiter = ',')]
    pub(crate) categories: Vec<String>,
    /// Agencies objected to, comma-separated.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub(crate) agencies: Vec<String>,
    /// Sectors objected to, comma-separated: health, education, social-care,
    /// adult-social-care, icb. With no --agencies either, every recipient.
    #[arg(long, value_name = "SECTORS", value_delimiter = ',')]
    pub(crate) sectors: Vec<String>,
    /// Why, in the family's words (optional, encrypted at rest).
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
    /// How it was given.
    #[command(flatten)]
    pub(crate) evidence: EvidenceArgs,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// Evidence of how a consent or withdrawal was given.
#[derive(Debug, Args)]
pub(crate) struct EvidenceArgs {
    /// in-person, telephone, signed-form or video-call.
    #[arg(long, value_name = "METHOD")]
    pub(crate) evidence_method: String,
    /// E.g. the reference of a scanned signed form.
    #[arg(long, default_value = "", value_name = "REF")]
    pub(crate) evidence_reference: String,
    /// ISO 639 code of the language it was given in, e.g. pl.
    #[arg(long, default_value = "", value_name = "CODE")]
    pub(crate) language: String,
    /// An interpreter was present.
    #[arg(long)]
    pub(crate) interpreter_present: bool,
}

/// `tio relationship`.
#[derive(Debug, Subcommand)]
pub(crate) enum RelationshipCommand {
    /// Declare this agency's involvement with a child.
    Declare {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// referral, enrolment, allocation or registration.
        #[arg(long, value_name = "KIND")]
        kind: String,
        /// Your reference for it.
        #[arg(long, default_value = "", value_name = "REF")]
        reference: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// End this agency's relationship with a child.
    End {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// The relationship's id.
        #[arg(long, value_name = "ID")]
        relationship_id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// List this agency's relationships with a child.
    List {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// Include ended relationships.
        #[arg(long)]
        include_ended: bool,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// `tio subscribe`.
#[derive(Debug, Args)]
pub(crate) struct SubscribeArgs {
    /// The subscription's name.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: String,
    /// Create the subscription first (it must not exist), with --categories and --start.
    #[arg(long)]
    pub(crate) create: bool,
    /// With --create: the categories, comma-separated.
    #[arg(long, value_name = "CATEGORIES", value_delimiter = ',', requires = "create")]
    pub(crate) categories: Vec<String>,
    /// With --create: live, profile (the current profile, then live), a time (a date or
    /// RFC 3339), or position:HEX.
    #[arg(long, default_value = "live", value_name = "START", requires = "create")]
    pub(crate) start: String,
    /// Stop after this many deliveries.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Do not acknowledge deliveries (they come again on the next connection).
    #[arg(long)]
    pub(crate) no_ack: bool,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// Which assessment of which child.
#[derive(Debug, Args)]
pub(crate) struct AssessmentArgs {
    /// The child's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// The assessment's id (ehc-1, ehc-2, ...).
    #[arg(long, value_name = "ID")]
    pub(crate) assessment_id: String,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio ehc`. Every command prints the assessment as a JSON line, and its clocks in
/// words on standard error.
#[derive(Debug, Subcommand)]
pub(crate) enum EhcCommand {
    /// Open an assessment from a request (the SEND team).
    Open {
        /// The day the request was received, e.g. 2026-11-02.
        #[arg(long, value_name = "DATE")]
        request_received: String,
        /// Who asked: parent, young-person, or an agency's id (a school's, say).
        #[arg(long, value_name = "WHO")]
        requested_by: String,
        /// The child.
        #[command(flatten)]
        child: ChildArgs,
    },
    /// Record a step (the SEND team): assess, do-not-assess, draft-sent,
    /// final-plan-issued, no-plan-notified, or exception.
    Step {
        /// Which step.
        #[arg(long, value_name = "STEP")]
        step: String,
        /// The day it happened (for an exception, its first day).
        #[arg(long, value_name = "DATE")]
        on: String,
        /// For an exception: school-closure, exceptional-personal-circumstances,
        /// absence-from-area or missed-appointment.
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        /// For an exception: its last day, once known.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// The assessment.
        #[command(flatten)]
        assessment: AssessmentArgs,
    },
    /// Ask an agency for one adviser's advice, due in 6 weeks (the SEND team). The reply
    /// lists what that agency already gave, which the family need not give again.
    Ask {
        /// parent-views, young-person-views, educational, medical-health,
        /// psychological, social-care, preparing-for-adulthood or other.
        #[arg(long, value_name = "TYPE")]
        adviser: String,
        /// The agency asked.
        #[arg(long, value_name = "ID")]
        agency: String,
        /// The day it was asked.
        #[arg(long, value_name = "DATE")]
        asked_on: String,
        /// The assessment.
        #[command(flatten)]
        assessment: AssessmentArgs,
    },
    /// Answer advice asked of this agency with an update it published since.
    Answer {
        /// The adviser type asked for.
        #[arg(long, value_name = "TYPE")]
        adviser: String,
        /// The update holding the advice.
        #[arg(long, value_name = "UPDATE_ID")]
        update_id: String,
        /// The assessment.
        #[command(flatten)]
        assessment: AssessmentArgs,
    },
    /// Record that advice an agency already gave is sufficient (the SEND team), with the
    /// day each of the three agreed (regulation 6(4)).
    Reuse {
        /// The adviser type asked for.
        #[arg(long, value_name = "TYPE")]
        adviser: String,
        /// The update holding the advice already given.
        #[arg(long, value_name = "UPDATE_ID")]
        update_id: String,
        /// The day the authority agreed.
        #[arg(long, value_name = "DATE")]
        authority_agreed: String,
        /// The day the person who gave the advice agreed.
        #[arg(long, value_name = "DATE")]
        adviser_agreed: String,
        /// The day the child's parent, or the young person, agreed.
        #[arg(long, value_name = "DATE")]
        family_agreed: String,
        /// The assessment.
        #[command(flatten)]
        assessment: AssessmentArgs,
    },
    /// Show one assessment and its clocks.
    Show {
        /// The assessment.
        #[command(flatten)]
        assessment: AssessmentArgs,
    },
    /// Show every assessment of a child this agency may see.
    List {
        /// The child.
        #[command(flatten)]
        child: ChildArgs,
    },
}

/// `tio transition`. Every command prints the record as a JSON line, and its milestones
/// in words on standard error.
#[derive(Debug, Subcommand)]
pub(crate) enum TransitionCommand {
    /// Open the record at the Year 9 annual review (the SEND team), with an owner for
    /// every milestone.
    Open {
        /// The day of the review, e.g. 2026-11-02.
        #[arg(long, value_name = "DATE")]
        opened_on: String,
        /// MILESTONE=AGENCY, once for each of preparing-for-adulthood-review,
        /// annual-health-check, adult-social-care-referral, adult-health-services,
        /// plan-review-before-leaving and plan-ceases.
        #[arg(long = "owner", value_name = "MILESTONE=AGENCY", required = true)]
        owners: Vec<String>,
        /// The young person.
        #[command(flatten)]
        young_person: ChildArgs,
    },
    /// Record a milestone done (its owner, or the SEND team).
    Done {
        /// The milestone (as for --owner).
        #[arg(long, value_name = "MILESTONE")]
        milestone: String,
        /// The day it was done.
        #[arg(long, value_name = "DATE")]
        on: String,
        /// The young person.
        #[command(flatten)]
        young_person: ChildArgs,
    },
    /// Record the day the young person is expected to leave education (the SEND team).
    Leaving {
        /// The day.
        #[arg(long, value_name = "DATE")]
        on: String,
        /// The young person.
        #[command(flatten)]
        young_person: ChildArgs,
    },
    /// Show the record and its milestones today.
    Show {
        /// The young person.
        #[command(flatten)]
        young_person: ChildArgs,
    },
}

/// Which child or young person, and how to reach the broker.
#[derive(Debug, Args)]
pub(crate) struct ChildArgs {
    /// The child's or young person's NHS number.
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio safeguarding`.
#[derive(Debug, Subcommand)]
pub(crate) enum SafeguardingCommand {
    /// Declare a share: the named recipients, involved with the child, receive these
    /// categories without consent until it expires (7 days by default, at most 30).
    Declare {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// risk-of-significant-harm, section-47-enquiry, section-17-assessment,
        /// police-protection, court-order or other.
        #[arg(long, value_name = "REASON")]
        reason: String,
        /// Why, in words (required for other; encrypted at rest).
        #[arg(long, default_value = "", value_name = "TEXT")]
        reason_text: String,
        /// Categories shared, comma-separated.
        #[arg(long, value_name = "CATEGORIES", value_delimiter = ',', required = true)]
        categories: Vec<String>,
        /// Recipient agencies, comma-separated.
        #[arg(long, value_name = "IDS", value_delimiter = ',')]
        agencies: Vec<String>,
        /// Recipient sectors, comma-separated.
        #[arg(long, value_name = "SECTORS", value_delimiter = ',')]
        sectors: Vec<String>,
        /// When it ends (a date or an RFC 3339 time); 7 days from now if not given.
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
        /// When telling the family is to be reviewed (a date, e.g. 2027-01-29).
        #[arg(long, value_name = "DATE")]
        review_family_notification_by: Option<String>,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Renew a share in force for a new reason.
    Renew {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// The share's id (s-1, s-2, ...).
        #[arg(long, value_name = "ID")]
        share_id: String,
        /// The new reason (as for declare).
        #[arg(long, value_name = "REASON")]
        reason: String,
        /// Why, in words.
        #[arg(long, default_value = "", value_name = "TEXT")]
        reason_text: String,
        /// When it ends now; 7 days from now if not given.
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// End a share now.
    End {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// The share's id.
        #[arg(long, value_name = "ID")]
        share_id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Show a child's shares.
    List {
        /// The child's NHS number.
        #[arg(long, value_name = "NHS_NUMBER")]
        nhs_number: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// `tio alerts`.
#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCommand {
    /// Print alerts as they happen, as JSON lines, each acknowledged once printed, so
    /// that the next watch resumes after it; Ctrl-C to stop.
    Watch {
        /// Start at this leaf index instead of after the last acknowledged alert.
        #[arg(long, value_name = "LEAF")]
        from: Option<u64>,
        /// Stop after this many alerts.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Do not acknowledge alerts (they come again on the next watch).
        #[arg(long)]
        no_ack: bool,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Print past alerts, oldest first, as JSON lines.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: usize,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// `tio bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Scenarios, comma-separated, or `all`: transport-floor, publish-unary,
    /// publish-stream, fanout-latency, catch-up, profile-read, stalled-subscriber. The
    /// transport floor (health checks, no work) always runs first, and every throughput
    /// is also shown as a share of it.
    #[arg(long, value_delimiter = ',', default_value = "all", value_name = "NAMES")]
    pub(crate) scenario: Vec<String>,
    /// How long each scenario's measured phase runs, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub(crate) duration: u64,
    /// Concurrent publishers for publish-unary (and readers for profile-read, callers for
    /// transport-floor).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub(crate) publishers: usize,
    /// Publishes per second for fanout-latency.
    #[arg(long, default_value_t = 1000, value_name = "R")]
    pub(crate) rate: u64,
    /// Stored updates a new subscriber replays in catch-up.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub(crate) catch_up_updates: usize,
    /// Audit entries the log holds (at least; filled by publishes) before
    /// console-overview asks for the console's first page.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub(crate) console_entries: u64,
    /// Run stalled-subscriber without its stalled subscription: the same load, as a
    /// control for its memory figures.
    #[arg(long)]
    pub(crate) without_stall: bool,
    /// Print one JSON object per scenario instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run against this running development server instead (needs --dev-pki).
    #[arg(long, value_name = "URL", requires = "dev_pki")]
    pub(crate) server: Option<String>,
    /// The running development server's certificate directory.
    #[arg(long, value_name = "DIR", requires = "server")]
    pub(crate) dev_pki: Option<std::path::PathBuf>,
}

/// `tio demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo server's data in this directory (default: a temporary one).
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    pub(crate) data_dir: Option<std::path::PathBuf>,
    /// Run against this running development server instead of starting one (needs
    /// --dev-pki).
    #[arg(long, value_name = "URL", requires = "dev_pki")]
    pub(crate) server: Option<String>,
    /// The running development server's certificate directory (DATA_DIR/dev-pki).
    #[arg(long, value_name = "DIR", requires = "server")]
    pub(crate) dev_pki: Option<std::path::PathBuf>,
}

/// `tio admin`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Agencies: the systems that may connect, and what each may publish and read.
    #[command(subcommand)]
    Agency(AgencyCommand),
    /// Refuse a client certificate from now on, by its SHA-256 fingerprint.
    Revoke {
        /// The certificate's SHA-256 fingerprint, 64 hex digits (e.g. from
        /// `openssl x509 -in CERT -noout -fingerprint -sha256`, colons removed).
        #[arg(long, value_name = "HEX")]
        fingerprint: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Erase a child (UK GDPR Art. 17): destroy its data key, so that nothing stored
    /// about it can be read again by anyone. Cannot be undone; the audit log keeps the
    /// erasure, naming the child by blind index only.
    Erase {
        /// The child's NHS number.
        #[arg(long, value_name = "NUMBER")]
        nhs_number: String,
        /// Why, for the audit log (the legal basis, who asked).
        #[arg(long)]
        reason: String,
        /// The erasure request's own reference (a case or ticket number).
        #[arg(long, value_name = "REF")]
        reference: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// `tio admin agency`.
#[derive(Debug, Subcommand)]
pub(crate) enum AgencyCommand {
    /// Register a new agency. Its systems then connect with a certificate for
    /// urn:tio:agency:ID.
    Register(AgencyArgs),
    /// Replace an agency's name, sector, code and permissions (its suspension stays).
    Update(AgencyArgs),
    /// Suspend an agency: refused everywhere from its next call.
    Suspend {
        /// The agency's id.
        #[arg(long, value_name = "ID")]
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Lift an agency's suspension.
    Reinstate {
        /// The agency's id.
        #[arg(long, value_name = "ID")]
        id: String,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// List every registered agency.
    List {
        /// Output: a table, or JSON lines.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// How to reach the broker.
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// An agency's registration.
#[derive(Debug, Args)]
pub(crate) struct AgencyArgs {
    /// The id: 1 to 64 characters of a-z, 0-9 and '-' (the ID of urn:tio:agency:ID).
    #[arg(long, value_name = "ID")]
    pub(crate) id: String,
    /// The name people see (reports, lists).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: String,
    /// The sector: health, education, social-care, adult-social-care or icb.
    #[arg(long, value_name = "SECTOR")]
    pub(crate) sector: String,
    /// The NHS ODS code (health).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["school_urn", "la_code"])]
    pub(crate) ods: Option<String>,
    /// The school's 6-digit URN.
    #[arg(long, value_name = "URN", conflicts_with = "la_code")]
    pub(crate) school_urn: Option<String>,
    /// The council's 3-digit local-authority code.
    #[arg(long, value_name = "CODE")]
    pub(crate) la_code: Option<String>,
    /// Categories it may publish, comma-separated (e.g. health_summary,communication_needs).
    #[arg(long, value_name = "CATEGORIES", value_delimiter = ',')]
    pub(crate) may_publish: Vec<String>,
    /// Categories it may read, comma-separated.
    #[arg(long, value_name = "CATEGORIES", value_delimiter = ',')]
    pub(crate) may_read: Vec<String>,
    /// Its professionals may record and withdraw consent.
    #[arg(long)]
    pub(crate) may_record_consent: bool,
    /// Its professionals may declare safeguarding shares (sharing without consent where
    /// a child may be at risk).
    #[arg(long)]
    pub(crate) may_declare_safeguarding: bool,
    /// It runs EHC needs assessments (the council's SEND team).
    #[arg(long)]
    pub(crate) may_run_ehc_assessments: bool,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio audit query`.
#[derive(Debug, Args)]
pub(crate) struct AuditQueryArgs {
    /// Entries at or after this time: a date (2026-11-23, local midnight) or an RFC 3339
    /// time (2026-11-23T09:30:00Z).
    #[arg(long, value_name = "TIME")]
    pub(crate) from: Option<String>,
    /// Entries before this time (same forms as --from).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// Entries where this agency acted or received.
    #[arg(long, value_name = "ID")]
    pub(crate) agency: Option<String>,
    /// Entries of this action: publish, profile_read, delivery, delivery_skipped,
    /// consent_recorded, consent_withdrawn, consent_read, objection_raised,
    /// objection_withdrawn, safeguarding_declared, safeguarding_renewed,
    /// safeguarding_ended, relationship_declared, relationship_ended,
    /// relationship_read, subscription_changed, admin, audit_read, authentication.
    #[arg(long, value_name = "ACTION")]
    pub(crate) action: Option<String>,
    /// Entries with this outcome: allowed, denied or failed.
    #[arg(long, value_name = "OUTCOME")]
    pub(crate) outcome: Option<String>,
    /// Entries about this child (turned into its blind index by the server).
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: Option<String>,
    /// The most entries to print.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(crate) limit: usize,
    /// Output: a table, or JSON lines (each entry exactly as the log hashed it).
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub(crate) format: QueryFormat,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// How `tio audit query` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum QueryFormat {
    /// A readable table.
    Table,
    /// One JSON object per line.
    Json,
}

/// `tio audit report`.
#[derive(Debug, Args)]
pub(crate) struct AuditReportArgs {
    /// The child's NHS number (943 476 5919, 943-476-5919 or 9434765919).
    #[arg(long, value_name = "NHS_NUMBER")]
    pub(crate) nhs_number: String,
    /// Only entries at or after this time (a date or an RFC 3339 time).
    #[arg(long, value_name = "TIME")]
    pub(crate) from: Option<String>,
    /// Only entries before this time.
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// Output: text for reading, json or csv for other tools.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(crate) format: ReportFormat,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// How `tio audit report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// A readable table in plain words.
    Text,
    /// A JSON array of lines.
    Json,
    /// Comma-separated values with a header row, safe to open in a spreadsheet.
    Csv,
}

/// `tio keys`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a new key ring file (mode 0600): a key-encryption key and a blind-index
    /// key. Keep it outside the data directory and back it up separately.
    Init {
        /// Where to write it; never overwritten.
        #[arg(long, env = "TIO_KEYS_FILE", value_name = "FILE")]
        keys_file: PathBuf,
        /// The audit log's origin: a unique name for this deployment's log, by
        /// convention a host name and path (e.g. tio.example-council.gov.uk/audit).
        /// Checkpoints carry it; the checkpoint signing key is named after it.
        #[arg(long, value_name = "ORIGIN")]
        audit_origin: String,
    },
    /// Add a new key-encryption key version and re-wrap every child's data key under it.
    /// With --data-dir, on a stopped store; otherwise through the running server (an
    /// admin certificate), which rewrites its own ring file while traffic flows. The old
    /// version stays in the ring until retired.
    Rotate(KeyRotationArgs),
    /// Remove a key-encryption key version once no data key uses it (with --data-dir on
    /// a stopped store; otherwise through the running server).
    Retire {
        /// Which store and ring, or which server.
        #[command(flatten)]
        store: KeyRotationArgs,
        /// The key-encryption key version to remove.
        #[arg(long, value_name = "VERSION")]
        kek_version: u32,
    },
}

/// A key ring and the stopped store it belongs to.
#[derive(Debug, Args)]
pub(crate) struct KeysStoreArgs {
    /// The key ring file.
    #[arg(long, env = "TIO_KEYS_FILE", value_name = "FILE")]
    pub(crate) keys_file: Option<PathBuf>,
    /// The data directory (the store is DATA_DIR/store).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// The store's engine.
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

/// The engine a stopped store runs on: the configuration's `store.engine` and
/// `store.index_engine` (and for PostgreSQL, `store.postgres`).
#[derive(Debug, Clone, Args)]
pub(crate) struct EngineArgs {
    /// The storage engine: log (the default), postgres (the database of
    /// --postgres-url) or sled (a store not yet migrated).
    #[arg(long, value_name = "ENGINE", default_value = "log", value_parser = parse_engine, requires = "data_dir")]
    pub(crate) engine: EngineKind,
    /// The index store beside the group log: fjall (the default) or sled.
    #[arg(long, value_name = "INDEX", default_value = "fjall", value_parser = parse_index_engine, requires = "data_dir")]
    pub(crate) index_engine: IndexEngine,
    /// The database's connection string, with --engine postgres (the password from
    /// PGPASSWORD). Every broker node on it must be stopped: the command holds the
    /// database as a node would.
    #[arg(long, value_name = "URL", env = "TIO_STORE_POSTGRES_URL", hide_env_values = true)]
    pub(crate) postgres_url: Option<String>,
    /// The authority that verifies the database's certificate (TLS), with --engine postgres.
    #[arg(long, value_name = "FILE")]
    pub(crate) postgres_ca_file: Option<PathBuf>,
}

impl EngineArgs {
    /// How to open the store.
    pub(crate) fn options(&self) -> anyhow::Result<StoreOptions> {
        let postgres = match (self.engine, &self.postgres_url) {
            (EngineKind::Postgres, None) => anyhow::bail!("--engine postgres needs --postgres-url"),
            (EngineKind::Postgres, Some(url)) => {
                let tls = match &self.postgres_ca_file {
                    Some(path) => Some(tio_store::PostgresTls {
                        ca_pem: std::fs::read(path)
                            .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", path.display()))?,
                        client: None,
                    }),
                    None => None,
                };
                Some(tio_store::PostgresOptions {
                    password: std::env::var("PGPASSWORD").ok(),
                    hold: tio_store::PostgresHold::Maintenance,
                    tls,
                    ..tio_store::PostgresOptions::new(url.clone())
                })
            }
            _ => None,
        };
        Ok(StoreOptions { engine: self.engine, index_engine: self.index_engine, postgres, ..StoreOptions::default() })
    }
}

/// A key ring and its stopped store (`--data-dir`), or a running server to ask.
#[derive(Debug, Args)]
pub(crate) struct KeyRotationArgs {
    /// The key ring file of a stopped store (default: the development ring in
    /// --data-dir).
    #[arg(long, env = "TIO_KEYS_FILE", value_name = "FILE", requires = "data_dir")]
    pub(crate) keys_file: Option<PathBuf>,
    /// The data directory of a stopped store. Leave out to ask the running server.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["dev_pki", "cert", "key"])]
    pub(crate) data_dir: Option<PathBuf>,
    /// The stopped store's engine.
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// How to reach a running server (when --data-dir is not given).
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// `tio store`.
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Check a stopped store without modifying it (it works on a copy): every record
    /// decrypts and authenticates, no record is missing from the logs, indexes agree. Exits 1 on
    /// any damage.
    Check(KeysStoreArgs),
    /// Write a consistent backup to a new file: of a stopped store with --data-dir, or
    /// of the running server's store (an admin certificate; writes pause only while the
    /// indexes are copied). Ciphertext only: back up the key ring separately.
    Backup {
        /// The data directory of a stopped store. Leave out to back up the running server.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["dev_pki", "cert", "key"])]
        data_dir: Option<PathBuf>,
        /// The stopped store's engine.
        #[command(flatten)]
        engine: EngineArgs,
        /// The backup file to create; never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// How to reach a running server (when --data-dir is not given).
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Restore a backup into a new data directory, on any engine: a store moves
    /// between engines this way (log positions are the engine's own, so the restore
    /// gives the records new ones; positions clients were given before do not carry over).
    Restore {
        /// The backup file.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The data directory to create the store in (DATA_DIR/store must not exist).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The engine to restore onto (set the same `store.engine` and
        /// `store.index_engine` in the configuration).
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// List each child's retention (by blind index, category by category, under the
    /// configuration's [retention] rules) and what is due for erasure; without
    /// --dry-run, erase it, on a stopped store, as the server's sweeper does: each
    /// category past its retention on its own, the whole record once every category is
    /// (the key destroyed, audited, past recipients told when they next connect).
    Retention {
        /// The store and its key ring.
        #[command(flatten)]
        store: KeysStoreArgs,
        /// Only list: change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The server's configuration file, for its [retention] rules (the built-in
        /// rules without it: the 25th birthday, 8 years after the last update while
        /// the date of birth is unknown); TIO_RETENTION_* variables apply over it, as
        /// they do for the server. Only the [retention] rules are checked.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// List as of this day instead of today, to see what will fall due, e.g.
        /// 2030-09-01 (with --dry-run only).
        #[arg(long, value_name = "DATE", requires = "dry_run")]
        on: Option<String>,
    },
    /// Rebuild a stopped store's index store from its group log (the log is the
    /// record; the indexes are derived from it): the old index store is kept until the
    /// new one is complete.
    Reindex {
        /// The data directory (the store is DATA_DIR/store).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The store's engine.
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Move a stopped store of an earlier release (format tio-store/2, the sled engine)
    /// to the group log (tio-store/3), in place: a logical backup, a restore beside it,
    /// then the new store takes its place and the old one is kept beside it
    /// (DATA_DIR/store.tio-store-2) until you remove it.
    Migrate {
        /// The data directory (the store is DATA_DIR/store).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The index store beside the group log: fjall (the default) or sled.
        #[arg(long, value_name = "INDEX", default_value = "fjall", value_parser = parse_index_engine)]
        index_engine: IndexEngine,
    },
}

/// `tio serve`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ServeArgs {
    /// Serve-related helpers.
    #[command(subcommand)]
    pub(crate) command: Option<ServeCommand>,
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "TIO_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on (key `listen`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Data directory (key `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Development mode: generated certificates under DATA_DIR/dev-pki, the
    /// development agencies, test-range NHS numbers, loopback addresses only.
    #[arg(long)]
    pub(crate) dev: bool,
    /// Log format: human or json (key `log.format`).
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
    /// Log level filter, e.g. info or tio_broker=debug (key `log.level`).
    #[arg(long, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// OTLP/gRPC collector endpoint for traces (key `telemetry.otlp_endpoint`).
    #[arg(long, value_name = "URL")]
    pub(crate) otlp_endpoint: Option<String>,
    /// Set any scalar configuration key, e.g. --set limits.drain_timeout_seconds=5.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) settings: Vec<(String, String)>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

/// `tio serve` helpers.
#[derive(Debug, Subcommand)]
pub(crate) enum ServeCommand {
    /// Print a commented default configuration file.
    GenConfig,
}

/// `tio dev-pki`.
#[derive(Debug, Args)]
pub(crate) struct DevPkiArgs {
    /// Directory to write into; created if absent. Existing files are never replaced.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

/// `tio health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Service to ask about, e.g. tio.v1.RecordService; empty for the whole server.
    #[arg(long, default_value = "")]
    pub(crate) service: String,
    /// Keep asking for up to this many seconds until the answer is SERVING (for a
    /// server just started); 0 asks once.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub(crate) wait: u64,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// Parses an engine name, listing the known ones if it is not one.
fn parse_engine(name: &str) -> Result<EngineKind, String> {
    EngineKind::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = EngineKind::ALL.iter().map(|kind| kind.name()).collect();
        format!("unknown engine `{name}`; known: {}", known.join(", "))
    })
}

fn parse_index_engine(name: &str) -> Result<IndexEngine, String> {
    IndexEngine::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = IndexEngine::ALL.iter().map(|kind| kind.name()).collect();
        format!("unknown index engine `{name}`; known: {}", known.join(", "))
    })
}

fn parse_key_value(input: &str) -> Result<(String, String), String> {
    input
        .split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{input}`"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(parse_key_value("log.level=tio=debug"), Ok(("log.level".into(), "tio=debug".into())));
        assert!(parse_key_value("listen").is_err());
    }
}
