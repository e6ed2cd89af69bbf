//! `tio admin`: the agency registry, certificate revocation and erasure, over mutual TLS
//! with an admin certificate.

use std::io::Write;

use tio_client::ClientError;
use tio_proto::v1;

use crate::cli::{AdminCommand, AgencyArgs, AgencyCommand, QueryFormat};
use crate::connection::UsageError;
use tio_auditor::table::write_table;

/// Runs a `tio admin` command.
pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Revoke { fingerprint, reason, connection } => {
            let client = connection.connect().await?;
            let fingerprint = fingerprint.replace(':', "").to_lowercase();
            let request = v1::RevokeCertificateRequest { fingerprint: fingerprint.clone(), reason };
            client.admin().revoke_certificate(client.request(request)).await.map_err(ClientError::from)?;
            println!("revoked certificate {fingerprint}");
        }
        AdminCommand::Erase { nhs_number, reason, reference, connection } => {
            let client = connection.connect().await?;
            let request = v1::EraseChildRequest {
                child: Some(v1::ChildRef { nhs_number }),
                reason,
                request_reference: reference,
            };
            let erased = client.admin().erase_child(client.request(request)).await.map_err(ClientError::from)?;
            println!("erased the child with blind index {}", erased.into_inner().child_index);
            println!("nothing stored about the child can be read again; the audit log keeps the erasure");
        }
        AdminCommand::Agency(AgencyCommand::Register(args)) => {
            let client = args.connection.connect().await?;
            let request = v1::RegisterAgencyRequest { agency: Some(agency_message(&args)?) };
            let agency = client.admin().register_agency(client.request(request)).await.map_err(ClientError::from)?;
            println!("registered {}", describe(&agency.into_inner()));
        }
        AdminCommand::Agency(AgencyCommand::Update(args)) => {
            let client = args.connection.connect().await?;
            let request = v1::UpdateAgencyRequest { agency: Some(agency_message(&args)?) };
            let agency = client.admin().update_agency(client.request(request)).await.map_err(ClientError::from)?;
            println!("updated {}", describe(&agency.into_inner()));
        }
        AdminCommand::Agency(AgencyCommand::Suspend { id, reason, connection }) => {
            let client = connection.connect().await?;
            let request = v1::SuspendAgencyRequest { agency_id: id, reason };
            let agency = client.admin().suspend_agency(client.request(request)).await.map_err(ClientError::from)?;
            println!("suspended {}", describe(&agency.into_inner()));
        }
        AdminCommand::Agency(AgencyCommand::Reinstate { id, connection }) => {
            let client = connection.connect().await?;
            let request = v1::ReinstateAgencyRequest { agency_id: id };
            let agency = client.admin().reinstate_agency(client.request(request)).await.map_err(ClientError::from)?;
            println!("reinstated {}", describe(&agency.into_inner()));
        }
        AdminCommand::Agency(AgencyCommand::List { format, connection }) => {
            let client = connection.connect().await?;
            let agencies = client
                .admin()
                .list_agencies(client.request(v1::ListAgenciesRequest {}))
                .await
                .map_err(ClientError::from)?
                .into_inner()
                .agencies;
            let mut out = std::io::stdout().lock();
            match format {
                QueryFormat::Json => {
                    for agency in &agencies {
                        writeln!(out, "{}", agency_json(agency))?;
                    }
                }
                QueryFormat::Table => {
                    let rows: Vec<[String; 6]> = agencies
                        .iter()
                        .map(|agency| {
                            [
                                agency.id.clone(),
                                agency.name.clone(),
                                name_of(agency.sector().as_str_name(), "SECTOR_"),
                                if agency.suspended { "suspended" } else { "active" }.to_owned(),
                                categories(&agency.may_publish).join(","),
                                categories(&agency.may_read).join(","),
                            ]
                        })
                        .collect();
                    write_table(&mut out, ["ID", "NAME", "SECTOR", "STATE", "MAY PUBLISH", "MAY READ"], &rows)?;
                    writeln!(out, "{} agencies", agencies.len())?;
                }
            }
        }
    }
    Ok(())
}

/// Parses a sector as the CLI spells it (`social-care`), listing the sectors the domain
/// has if it is none of them.
pub(crate) fn sector_from_flag(flag: &str, text: &str) -> Result<v1::Sector, UsageError> {
    v1::Sector::from_str_name(&format!("SECTOR_{}", text.replace('-', "_").to_uppercase()))
        .filter(|sector| *sector != v1::Sector::Unspecified)
        .ok_or_else(|| {
            let names: Vec<String> =
                tio_core::Sector::ALL.iter().map(|sector| sector.as_str().replace('_', "-")).collect();
            let (last, rest) = names.split_last().map_or(("", &[][..]), |(last, rest)| (last.as_str(), rest));
            UsageError::new(format!("{flag} `{text}`: expected {} or {last}", rest.join(", ")))
        })
}

/// Builds the registration message from the flags; the server validates it again.
fn agency_message(args: &AgencyArgs) -> Result<v1::Agency, UsageError> {
    let sector = sector_from_flag("--sector", &args.sector)?;
    let (code_kind, code) = match (&args.ods, &args.school_urn, &args.la_code) {
        (Some(code), _, _) => (v1::OrganisationCodeKind::Ods, code.clone()),
        (_, Some(code), _) => (v1::OrganisationCodeKind::SchoolUrn, code.clone()),
        (_, _, Some(code)) => (v1::OrganisationCodeKind::LocalAuthority, code.clone()),
        _ => (v1::OrganisationCodeKind::Unspecified, String::new()),
    };
    Ok(v1::Agency {
        id: args.id.clone(),
        name: args.name.clone(),
        sector: sector as i32,
        code_kind: code_kind as i32,
        code,
        may_publish: category_values("--may-publish", &args.may_publish)?,
        may_read: category_values("--may-read", &args.may_read)?,
        may_record_consent: args.may_record_consent,
        suspended: false,
        registered_at: None,
        may_declare_safeguarding: args.may_declare_safeguarding,
        may_run_ehc_assessments: args.may_run_ehc_assessments,
    })
}

/// Returns the contract values of category names such as `health_summary`.
pub(crate) fn category_values(flag: &str, names: &[String]) -> Result<Vec<i32>, UsageError> {
    names
        .iter()
        .filter(|name| !name.is_empty())
        .map(|name| {
            v1::Category::from_str_name(&format!("CATEGORY_{}", name.replace('-', "_").to_uppercase()))
                .filter(|category| *category != v1::Category::Unspecified)
                .map(|category| category as i32)
                .ok_or_else(|| {
                    let known: Vec<String> = tio_core::Category::ALL.iter().map(|c| c.as_str().to_owned()).collect();
                    UsageError::new(format!("{flag}: unknown category `{name}`; known: {}", known.join(", ")))
                })
        })
        .collect()
}

/// Returns the snake_case names of contract category values.
pub(crate) fn categories(values: &[i32]) -> Vec<String> {
    values
        .iter()
        .map(|value| {
            v1::Category::try_from(*value).map_or_else(|_| value.to_string(), |c| name_of(c.as_str_name(), "CATEGORY_"))
        })
        .collect()
}

/// Turns a contract enum name into its snake_case word: `SECTOR_SOCIAL_CARE` to `social_care`.
fn name_of(proto_name: &str, prefix: &str) -> String {
    proto_name.trim_start_matches(prefix).to_lowercase()
}

fn describe(agency: &v1::Agency) -> String {
    format!(
        "agency {} ({}, {}{})",
        agency.id,
        agency.name,
        name_of(agency.sector().as_str_name(), "SECTOR_"),
        if agency.suspended { ", suspended" } else { "" }
    )
}

fn agency_json(agency: &v1::Agency) -> serde_json::Value {
    serde_json::json!({
        "id": agency.id,
        "name": agency.name,
        "sector": name_of(agency.sector().as_str_name(), "SECTOR_"),
        "code_kind": name_of(agency.code_kind().as_str_name(), "ORGANISATION_CODE_KIND_"),
        "code": agency.code,
        "may_publish": categories(&agency.may_publish),
        "may_read": categories(&agency.may_read),
        "may_record_consent": agency.may_record_consent,
        "may_declare_safeguarding": agency.may_declare_safeguarding,
        "may_run_ehc_assessments": agency.may_run_ehc_assessments,
        "suspended": agency.suspended,
        "registered_at": agency.registered_at.as_ref().map(|t| t.seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sectors parse as the CLI spells them, and an unknown one lists every sector the
    /// domain has, so that a new sector needs no change here.
    #[test]
    fn sectors_parse_with_hyphens_and_an_unknown_one_lists_them_all() {
        assert_eq!(sector_from_flag("--sector", "adult-social-care").unwrap(), v1::Sector::AdultSocialCare);
        assert_eq!(sector_from_flag("--sector", "icb").unwrap(), v1::Sector::Icb);
        let err = sector_from_flag("--sectors", "police").unwrap_err().to_string();
        assert_eq!(err, "--sectors `police`: expected health, education, social-care, adult-social-care or icb");
        assert!(sector_from_flag("--sector", "unspecified").is_err());
    }

    #[test]
    fn category_names_map_to_the_contract_and_unknown_ones_are_named() {
        let names = vec!["health_summary".to_owned(), "send-support".to_owned()];
        assert_eq!(
            category_values("--may-read", &names).unwrap(),
            vec![v1::Category::HealthSummary as i32, v1::Category::SendSupport as i32]
        );
        assert_eq!(categories(&[v1::Category::HealthSummary as i32]), vec!["health_summary"]);
        let err = category_values("--may-read", &["health".to_owned()]).unwrap_err();
        assert!(err.to_string().starts_with("--may-read: unknown category `health`"), "{err}");
    }
}
