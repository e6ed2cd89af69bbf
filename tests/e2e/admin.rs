//! The AdminService and `tio admin` over real mutual TLS: agencies registered,
//! suspended, reinstated and certificates revoked take effect at the next call, are
//! refused to anyone but an admin, survive a restart, and are in the audit log.

use tio_broker::pki::LeafSpec;
use tio_core::Identity;
use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{Sandbox, tio_as};

fn health(sandbox: &Sandbox, name: &str) -> Result<(), String> {
    let (ok, stdout, stderr) = tio_as(sandbox, name, &["health"]);
    if ok { Ok(()) } else { Err(format!("{stdout}{stderr}")) }
}

const CLINIC: [&str; 14] = [
    "admin",
    "agency",
    "register",
    "--id",
    "clinic-rxx01",
    "--name",
    "Riverside Community Clinic",
    "--sector",
    "health",
    "--ods",
    "RXX01",
    "--may-publish",
    "health_summary,communication_needs",
    "--may-record-consent",
];

#[test]
fn admins_manage_the_registry_and_every_change_takes_effect_persists_and_is_audited() {
    let mut sandbox = Sandbox::start();
    // The development seed filled the empty registry.
    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &["admin", "agency", "list"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("7 agencies") && stdout.contains("Meadow Primary School"), "{stdout}");

    // Register a new agency; its certificate works at once.
    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &CLINIC);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "registered agency clinic-rxx01 (Riverside Community Clinic, health)");
    let (ok, _, stderr) = tio_as(&sandbox, "admin", &CLINIC);
    assert!(!ok && stderr.contains("ALREADY_EXISTS: agency `clinic-rxx01` is already registered"), "{stderr}");
    sandbox.pki.issue("clinic-rxx01", &LeafSpec::client(&Identity::agency("clinic-rxx01")));
    health(&sandbox, "clinic-rxx01").unwrap();

    // Suspension refuses the agency everywhere at its next call; reinstatement lifts it.
    let (ok, stdout, stderr) =
        tio_as(&sandbox, "admin", &["admin", "agency", "suspend", "--id", "school", "--reason", "certificate lost"]);
    assert!(ok && stdout.contains("suspended agency school"), "{stdout}{stderr}");
    let refused = health(&sandbox, "school").unwrap_err();
    assert!(refused.contains("PERMISSION_DENIED: agency `school` is suspended"), "{refused}");
    let (ok, _, stderr) = tio_as(&sandbox, "admin", &["admin", "agency", "reinstate", "--id", "school"]);
    assert!(ok, "{stderr}");
    health(&sandbox, "school").unwrap();
    let (ok, _, stderr) = tio_as(&sandbox, "admin", &["admin", "agency", "suspend", "--id", "nobody"]);
    assert!(!ok && stderr.contains("NOT_FOUND: agency `nobody` is not registered"), "{stderr}");

    // Revoking a certificate refuses it at its next call.
    let gp = sandbox.pki.fingerprint("gp");
    let (ok, _, stderr) =
        tio_as(&sandbox, "admin", &["admin", "revoke", "--fingerprint", &gp, "--reason", "key leaked"]);
    assert!(ok, "{stderr}");
    assert!(health(&sandbox, "gp").unwrap_err().contains("has been revoked"));

    // Only admins: an agency and an auditor are refused, and bad input names its field.
    for name in ["hospital", "auditor"] {
        let (ok, _, stderr) = tio_as(&sandbox, name, &["admin", "agency", "list"]);
        assert!(!ok && stderr.contains("PERMISSION_DENIED"), "{name}: {stderr}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let admin = sandbox.client("admin").await;
        let agency = v1::Agency {
            id: "school-2".into(),
            name: "Hillside School".into(),
            sector: v1::Sector::Education as i32,
            code_kind: v1::OrganisationCodeKind::SchoolUrn as i32,
            code: "12345".into(),
            ..Default::default()
        };
        let request = v1::RegisterAgencyRequest { agency: Some(agency) };
        let status = admin.admin().register_agency(admin.request(request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let violation = &status.get_details_bad_request().unwrap().field_violations[0];
        assert_eq!(
            (violation.field.as_str(), violation.description.as_str()),
            ("agency.code", "a school URN is 6 digits")
        );
    });

    // Everything survives a restart: the registry is in the store, not the configuration.
    sandbox.restart();
    health(&sandbox, "clinic-rxx01").unwrap();
    health(&sandbox, "school").unwrap();
    assert!(health(&sandbox, "gp").unwrap_err().contains("has been revoked"));
    let (ok, stdout, _) = tio_as(&sandbox, "admin", &["admin", "agency", "list", "--format", "json"]);
    assert!(ok);
    let clinic = stdout.lines().find(|line| line.contains("clinic-rxx01")).expect("clinic listed");
    let clinic: serde_json::Value = serde_json::from_str(clinic).unwrap();
    assert_eq!(clinic["code"], "RXX01");
    assert_eq!(clinic["may_publish"], serde_json::json!(["communication_needs", "health_summary"]));

    // And every change is in the audit log, with what changed.
    let (ok, stdout, stderr) = tio_as(
        &sandbox,
        "auditor",
        &["audit", "query", "--action", "admin", "--outcome", "allowed", "--format", "json"],
    );
    assert!(ok, "{stderr}");
    let details: Vec<String> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["detail"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(
        details,
        [
            "seed_registry 7 agencies".to_owned(),
            "register_agency clinic-rxx01".to_owned(),
            "suspend_agency school (certificate lost)".to_owned(),
            "reinstate_agency school".to_owned(),
            format!("revoke_certificate {gp} (key leaked)"),
        ]
    );
    let (ok, stdout, _) = tio_as(
        &sandbox,
        "auditor",
        &["audit", "query", "--action", "admin", "--outcome", "denied", "--format", "json"],
    );
    assert!(ok);
    assert_eq!(stdout.lines().count(), 2, "the agency's and the auditor's refusals: {stdout}");
}

/// Erasure (UK GDPR Art. 17) through the AdminService and `tio admin erase`: only an
/// admin may erase, bad input names its field, nothing about the child can be read
/// afterwards, a second erasure finds nothing, the audit log keeps the erasure under the
/// blind index, and the stopped store checks clean.
#[test]
fn an_admin_erases_a_child_and_nothing_about_it_can_be_read_again() {
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use crate::support::records::{
        AMY, as_professional, child, communication_needs, consent_request, publish, publish_request,
    };
    use crate::support::{arg, run_tio};

    let mut sandbox = Sandbox::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let profile_size = |client: &tio_client::Client| {
        let request = client.request(v1::GetProfileRequest { child: child(AMY), categories: Vec::new() });
        let client = client.clone();
        async move { client.records().get_profile(request).await.unwrap().into_inner().entries.len() }
    };
    runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let request = publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("Makaton"), "e-1");
        publish(&hospital, request).await.unwrap();
        let consent = consent_request(&[v1::Category::CommunicationNeeds]);
        hospital.consents().record_consent(hospital.request(consent)).await.unwrap();
        let school = as_professional(&sandbox, "school").await;
        let enrolment = v1::DeclareRelationshipRequest {
            child: child(AMY),
            kind: v1::RelationshipKind::Enrolment as i32,
            reference: String::new(),
        };
        school.relationships().declare_relationship(school.request(enrolment)).await.unwrap();
        assert_eq!(profile_size(&school).await, 1, "control: the school may read the value");

        let erase = |client: &tio_client::Client, reason: &str, reference: &str| {
            let request = client.request(v1::EraseChildRequest {
                child: child(AMY),
                reason: reason.into(),
                request_reference: reference.into(),
            });
            let client = client.clone();
            async move { client.admin().erase_child(request).await }
        };
        let refused = erase(&hospital, "asked", "SAR-1").await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        let admin = sandbox.client("admin").await;
        for (reason, reference, field) in
            [("", "SAR-1", "reason"), ("asked", "", "request_reference"), ("asked", " SAR-1", "request_reference")]
        {
            let status = erase(&admin, reason, reference).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}");
            assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, field);
        }
        assert_eq!(profile_size(&school).await, 1, "refused erasures change nothing");
    });

    let (ok, stdout, stderr) = tio_as(
        &sandbox,
        "admin",
        &[
            "admin",
            "erase",
            "--nhs-number",
            AMY,
            "--reason",
            "Art. 17 request from the family",
            "--reference",
            "SAR-17",
        ],
    );
    assert!(ok, "{stderr}");
    let index = stdout.lines().next().and_then(|line| line.strip_prefix("erased the child with blind index "));
    let index = index.expect("the blind index is shown").to_owned();
    assert_eq!(index.len(), 64, "{stdout}");
    let (ok, _, stderr) = tio_as(
        &sandbox,
        "admin",
        &["admin", "erase", "--nhs-number", AMY, "--reason", "again", "--reference", "SAR-18"],
    );
    assert!(!ok && stderr.contains("NOT_FOUND"), "a second erasure finds nothing: {stderr}");

    runtime.block_on(async {
        let school = as_professional(&sandbox, "school").await;
        assert_eq!(profile_size(&school).await, 0, "nothing about the child can be read");
    });
    let (ok, stdout, stderr) = tio_as(
        &sandbox,
        "auditor",
        &["audit", "query", "--action", "admin", "--outcome", "allowed", "--format", "json"],
    );
    assert!(ok, "{stderr}");
    let erasure = stdout.lines().find(|line| line.contains("erase_child")).expect("the erasure is audited");
    let erasure: serde_json::Value = serde_json::from_str(erasure).unwrap();
    assert_eq!(erasure["detail"], "erase_child SAR-17 (Art. 17 request from the family)");
    assert_eq!(erasure["child_index"], index.as_str());

    sandbox.signal(Signal::SIGTERM);
    assert!(sandbox.wait_exit(Duration::from_secs(20)).success(), "{}", sandbox.log_text());
    let keys = sandbox.data_dir().join("dev-keys").join("tio.keys");
    let (status, report, stderr) =
        run_tio(&["store", "check", "--data-dir", &arg(&sandbox.data_dir()), "--keys-file", &arg(&keys)], &[]);
    assert!(status.success(), "the store checks clean after an erasure: {report}{stderr}");
}
