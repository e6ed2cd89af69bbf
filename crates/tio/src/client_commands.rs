//! The agency commands: `tio publish`, `tio profile`, `tio consent`, `tio relationship`
//! and `tio subscribe`. Results print as JSON lines (the protobuf JSON mapping, with the
//! `.proto` field names), so they read well and pipe into other tools.

use std::io::{Read, Write};

use anyhow::Context;
use tio_client::ClientError;
use tio_proto::v1;
use tokio_stream::wrappers::ReceiverStream;

use crate::admin_commands::{category_values, sector_from_flag};
use crate::audit_remote::{parse_nhs_number, parse_time};
use crate::cli::{
    AlertsCommand, ConsentCommand, ConsentRecordArgs, EvidenceArgs, ObjectArgs, PublishArgs, RelationshipCommand,
    SafeguardingCommand, SubscribeArgs,
};
use crate::connection::UsageError;
use crate::json::to_json;

/// The contract's reference to the child with `nhs_number`, checked.
pub(crate) fn child(nhs_number: &str) -> Result<Option<v1::ChildRef>, UsageError> {
    Ok(Some(v1::ChildRef { nhs_number: parse_nhs_number(nhs_number)?.digits() }))
}

/// Prints a contract message as one JSON line.
pub(crate) fn print_json<M: prost::Message>(full_name: &str, message: &M) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", to_json(full_name, message)?)?;
    out.flush()?;
    Ok(())
}

/// Returns the contract value named `text` (`in-person`, `in_person`), given the enum's
/// prefix (`CONSENT_METHOD_`) and its `from_str_name`.
pub(crate) fn named<T: PartialEq + Copy>(
    flag: &str,
    text: &str,
    prefix: &str,
    from_str_name: fn(&str) -> Option<T>,
    unspecified: T,
    choices: &str,
) -> Result<T, UsageError> {
    from_str_name(&format!("{prefix}{}", text.replace('-', "_").to_uppercase()))
        .filter(|value| *value != unspecified)
        .ok_or_else(|| UsageError::new(format!("{flag} `{text}`: expected {choices}")))
}

/// `tio publish`.
pub(crate) async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let (category, value) = category_value_arg(&args.category, &args.value)?;
    let request = v1::PublishRequest {
        child: child(&args.nhs_number)?,
        category,
        value: Some(value),
        source_reference: args.source_reference,
        idempotency_key: idempotency_key(args.idempotency_key)?,
        recorded_at: None,
    };
    let client = args.connection.connect_agency().await?;
    let response = client.records().publish(client.request(request)).await.map_err(ClientError::from)?;
    print_json("tio.v1.PublishResponse", response.get_ref())
}

/// Reads `--category` and the JSON value `--value` names (a file, or `-` for stdin).
fn category_value_arg(category: &str, file: &std::path::Path) -> anyhow::Result<(i32, v1::CategoryValue)> {
    let code =
        category_values("--category", &[category.to_owned()])?.first().copied().context("--category is required")?;
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).context("cannot read the value from stdin")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    // The file holds the category's own message, parsed as typed so that positions in
    // errors are the user's.
    let category_name = category.replace('-', "_");
    let value = crate::json::category_value_from_json(&category_name, &text)
        .map_err(|err| UsageError::new(format!("--value: not a valid {category_name} value: {err}")))?;
    Ok((code, value))
}

/// `tio correct`.
pub(crate) async fn correct(args: crate::cli::CorrectArgs) -> anyhow::Result<()> {
    let (category, value) = category_value_arg(&args.category, &args.value)?;
    let request = v1::CorrectUpdateRequest {
        child: child(&args.nhs_number)?,
        update_id: args.update_id,
        category,
        value: Some(value),
        source_reference: args.source_reference,
        reason: args.reason,
    };
    let client = args.connection.connect_agency().await?;
    let response = client.records().correct_update(client.request(request)).await.map_err(ClientError::from)?;
    print_json("tio.v1.AmendUpdateResponse", response.get_ref())
}

/// `tio retract`.
pub(crate) async fn retract(args: crate::cli::RetractArgs) -> anyhow::Result<()> {
    let request = v1::RetractUpdateRequest {
        child: child(&args.nhs_number)?,
        update_id: args.update_id,
        reason: args.reason,
        source_reference: args.source_reference,
    };
    let client = args.connection.connect_agency().await?;
    let response = client.records().retract_update(client.request(request)).await.map_err(ClientError::from)?;
    print_json("tio.v1.AmendUpdateResponse", response.get_ref())
}

/// Returns the key to publish under: the one given, which must not be empty, or a new
/// random one (a UUID), printed on stderr so that a retry can reuse it.
fn idempotency_key(given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(key) if key.trim().is_empty() => Err(UsageError::new(
            "--idempotency-key is empty: give a key unique to this update, or leave the flag out to have one made",
        )
        .into()),
        Some(key) => Ok(key),
        None => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes)
                .map_err(|err| anyhow::anyhow!("no randomness for an idempotency key: {err}"))?;
            // A version 4 UUID: the form integration teams expect.
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let hex = hex::encode(bytes);
            let key = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
            eprintln!("idempotency key: {key} (pass it as --idempotency-key to retry this publish safely)");
            Ok(key)
        }
    }
}

/// `tio profile`.
pub(crate) async fn profile(args: crate::cli::ProfileArgs) -> anyhow::Result<()> {
    let request = v1::GetProfileRequest {
        child: child(&args.nhs_number)?,
        categories: category_values("--categories", &args.categories)?,
    };
    let client = args.connection.connect_agency().await?;
    let response = client.records().get_profile(client.request(request)).await.map_err(ClientError::from)?;
    for entry in &response.get_ref().entries {
        print_json("tio.v1.ProfileEntry", entry)?;
    }
    Ok(())
}

fn evidence(args: &EvidenceArgs) -> Result<v1::ConsentEvidence, UsageError> {
    let method = named(
        "--evidence-method",
        &args.evidence_method,
        "CONSENT_METHOD_",
        v1::ConsentMethod::from_str_name,
        v1::ConsentMethod::Unspecified,
        "in-person, telephone, signed-form or video-call",
    )?;
    Ok(v1::ConsentEvidence {
        method: method as i32,
        reference: args.evidence_reference.clone(),
        language: args.language.clone(),
        interpreter_present: args.interpreter_present,
        notes: String::new(),
    })
}

fn giver_role(text: &str) -> Result<v1::ConsentGiverRole, UsageError> {
    match text {
        "parent" => Ok(v1::ConsentGiverRole::ParentWithParentalResponsibility),
        other => named(
            "--giver-role",
            other,
            "CONSENT_GIVER_ROLE_",
            v1::ConsentGiverRole::from_str_name,
            v1::ConsentGiverRole::Unspecified,
            "parent, local-authority, young-person, competent-child, best-interests, deputy or attorney",
        ),
    }
}

fn sector_values(sectors: &[String]) -> Result<Vec<i32>, UsageError> {
    sectors.iter().map(|sector| sector_from_flag("--sectors", sector).map(|sector| sector as i32)).collect()
}

fn objection_request(args: &ObjectArgs) -> Result<v1::RecordObjectionRequest, UsageError> {
    Ok(v1::RecordObjectionRequest {
        child: child(&args.nhs_number)?,
        giver_role: giver_role(&args.giver_role)? as i32,
        giver_name: args.giver_name.clone(),
        categories: category_values("--categories", &args.categories)?,
        agency_ids: args.agencies.clone(),
        sectors: sector_values(&args.sectors)?,
        reason: args.reason.clone(),
        evidence: Some(evidence(&args.evidence)?),
    })
}

fn consent_request(args: &ConsentRecordArgs) -> Result<v1::RecordConsentRequest, UsageError> {
    let giver_role = giver_role(&args.giver_role)?;
    let sectors = sector_values(&args.sectors)?;
    let lawful_basis = named(
        "--lawful-basis",
        &args.lawful_basis,
        "LAWFUL_BASIS_",
        v1::LawfulBasis::from_str_name,
        v1::LawfulBasis::Unspecified,
        "consent, legal-obligation, vital-interests or public-task",
    )?;
    let special = match &args.special_category_condition {
        None => v1::SpecialCategoryCondition::Unspecified,
        Some(text) => named(
            "--special-category-condition",
            text,
            "SPECIAL_CATEGORY_CONDITION_",
            v1::SpecialCategoryCondition::from_str_name,
            v1::SpecialCategoryCondition::Unspecified,
            "explicit-consent, vital-interests, health-or-social-care or substantial-public-interest",
        )?,
    };
    Ok(v1::RecordConsentRequest {
        authority: match (&args.authority_by, &args.authority_on) {
            (Some(by), Some(on)) => {
                Some(v1::GiverAuthority { by: by.clone(), on: Some(date_value("--authority-on", on)?) })
            }
            _ => None,
        },
        child: child(&args.nhs_number)?,
        giver_role: giver_role as i32,
        giver_name: args.giver_name.clone(),
        categories: category_values("--categories", &args.categories)?,
        recipients: Some(v1::Recipients {
            agency_ids: args.agencies.clone(),
            sectors,
            excluded_agency_ids: args.exclude.clone(),
        }),
        purpose: args.purpose.clone(),
        lawful_basis: lawful_basis as i32,
        special_category_condition: special as i32,
        valid: Some(v1::Validity {
            from: None,
            until: args.valid_until.as_deref().map(|text| parse_time("--valid-until", text)).transpose()?,
        }),
        evidence: Some(evidence(&args.evidence)?),
    })
}

/// `tio consent`.
pub(crate) async fn consent(command: ConsentCommand) -> anyhow::Result<()> {
    match command {
        ConsentCommand::Record(args) => {
            let request = consent_request(&args)?;
            let client = args.connection.connect_agency().await?;
            let record = client.consents().record_consent(client.request(request)).await.map_err(ClientError::from)?;
            print_json("tio.v1.ConsentRecord", record.get_ref())
        }
        ConsentCommand::Withdraw { nhs_number, consent_id, reason, evidence: how, connection } => {
            let request = v1::WithdrawConsentRequest {
                child: child(&nhs_number)?,
                consent_id,
                reason,
                evidence: Some(evidence(&how)?),
            };
            let client = connection.connect_agency().await?;
            let record =
                client.consents().withdraw_consent(client.request(request)).await.map_err(ClientError::from)?;
            print_json("tio.v1.ConsentRecord", record.get_ref())
        }
        ConsentCommand::Object(args) => {
            let request = objection_request(&args)?;
            let client = args.connection.connect_agency().await?;
            let record =
                client.consents().record_objection(client.request(request)).await.map_err(ClientError::from)?;
            print_json("tio.v1.ObjectionRecord", record.get_ref())
        }
        ConsentCommand::WithdrawObjection { nhs_number, objection_id, reason, evidence: how, connection } => {
            let request = v1::WithdrawObjectionRequest {
                child: child(&nhs_number)?,
                objection_id,
                reason,
                evidence: Some(evidence(&how)?),
            };
            let client = connection.connect_agency().await?;
            let record =
                client.consents().withdraw_objection(client.request(request)).await.map_err(ClientError::from)?;
            print_json("tio.v1.ObjectionRecord", record.get_ref())
        }
        ConsentCommand::Objections { nhs_number, connection } => {
            let client = connection.connect_agency().await?;
            let child = child(&nhs_number)?;
            let records = every_page(|page| {
                let request = v1::ListObjectionsRequest { child: child.clone(), page: Some(page) };
                let client = &client;
                async move {
                    let response = client.consents().list_objections(client.request(request)).await?.into_inner();
                    Ok((response.objections, response.page.unwrap_or_default().next_page_token))
                }
            })
            .await?;
            for record in &records {
                print_json("tio.v1.ObjectionRecord", record)?;
            }
            Ok(())
        }
        ConsentCommand::Show { nhs_number, consent_id, connection } => {
            let client = connection.connect_agency().await?;
            let records = match consent_id {
                Some(consent_id) => {
                    let request = v1::ListConsentRevisionsRequest { child: child(&nhs_number)?, consent_id };
                    let response = client.consents().list_consent_revisions(client.request(request)).await;
                    response.map_err(ClientError::from)?.into_inner().revisions
                }
                None => {
                    let child = child(&nhs_number)?;
                    every_page(|page| {
                        let request = v1::ListConsentsRequest { child: child.clone(), page: Some(page) };
                        let client = &client;
                        async move {
                            let response = client.consents().list_consents(client.request(request)).await?.into_inner();
                            Ok((response.consents, response.page.unwrap_or_default().next_page_token))
                        }
                    })
                    .await?
                }
            };
            for record in &records {
                print_json("tio.v1.ConsentRecord", record)?;
            }
            Ok(())
        }
    }
}

/// Pages through a list, largest pages first, until the broker says it is done (or a
/// generous bound, so that a broker that never says so cannot keep it going).
async fn every_page<T, Fut>(mut fetch: impl FnMut(v1::PageRequest) -> Fut) -> Result<Vec<T>, ClientError>
where
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    const MAX_PAGES: usize = 10_000;
    let mut items = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let (page, next) = fetch(v1::PageRequest { page_size: 500, page_token }).await?;
        items.extend(page);
        if next.is_empty() {
            break;
        }
        page_token = next;
    }
    Ok(items)
}

/// `tio relationship`.
pub(crate) async fn relationship(command: RelationshipCommand) -> anyhow::Result<()> {
    match command {
        RelationshipCommand::Declare { nhs_number, kind, reference, connection } => {
            let kind = named(
                "--kind",
                &kind,
                "RELATIONSHIP_KIND_",
                v1::RelationshipKind::from_str_name,
                v1::RelationshipKind::Unspecified,
                "referral, enrolment, allocation or registration",
            )?;
            let request = v1::DeclareRelationshipRequest { child: child(&nhs_number)?, kind: kind as i32, reference };
            let client = connection.connect_agency().await?;
            let declared = client
                .relationships()
                .declare_relationship(client.request(request))
                .await
                .map_err(ClientError::from)?;
            if declared.get_ref().already_active {
                eprintln!(
                    "already declared: this agency's relationship {} with the child is active; nothing was changed",
                    declared.get_ref().relationship_id
                );
            }
            print_json("tio.v1.CareRelationship", declared.get_ref())
        }
        RelationshipCommand::End { nhs_number, relationship_id, reason, connection } => {
            let request = v1::EndRelationshipRequest { child: child(&nhs_number)?, relationship_id, reason };
            let client = connection.connect_agency().await?;
            let ended =
                client.relationships().end_relationship(client.request(request)).await.map_err(ClientError::from)?;
            print_json("tio.v1.CareRelationship", ended.get_ref())
        }
        RelationshipCommand::List { nhs_number, include_ended, connection } => {
            let request = v1::ListRelationshipsRequest { child: child(&nhs_number)?, include_ended };
            let client = connection.connect_agency().await?;
            let listed = client.relationships().list_relationships(client.request(request)).await;
            for relationship in &listed.map_err(ClientError::from)?.get_ref().relationships {
                print_json("tio.v1.CareRelationship", relationship)?;
            }
            Ok(())
        }
    }
}

/// Returns where a new subscription starts.
fn start_from(text: &str) -> Result<v1::StartFrom, UsageError> {
    use v1::start_from::From;
    let from = match text {
        "live" => From::Live(v1::Live {}),
        "profile" => From::ProfileThenLive(v1::ProfileThenLive {}),
        other => match other.strip_prefix("position:") {
            Some(hex) => {
                let token = (0..hex.len())
                    .step_by(2)
                    .map(|index| hex.get(index..index + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .filter(|token| !token.is_empty())
                    .ok_or_else(|| UsageError::new(format!("--start `{other}`: the position must be hex")))?;
                From::AfterPosition(v1::Position { token })
            }
            None => From::Since(parse_time("--start", other).map_err(|_| {
                UsageError::new(format!("--start `{other}`: expected live, profile, a date or time, or position:HEX"))
            })?),
        },
    };
    Ok(v1::StartFrom { from: Some(from) })
}

/// `tio subscribe`: prints each delivery as a JSON line, then acks it.
pub(crate) async fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let client = args.connection.connect_agency().await?;
    if args.create {
        let request = v1::CreateSubscriptionRequest {
            name: args.name.clone(),
            categories: category_values("--categories", &args.categories)?,
            start: Some(start_from(&args.start)?),
            max_in_flight: 0,
        };
        client.subscriptions().create_subscription(client.request(request)).await.map_err(ClientError::from)?;
        eprintln!("created subscription {}", args.name);
    }
    eprintln!(
        "waiting for updates on subscription {} (each is printed as a JSON line and acked); press Ctrl-C to stop",
        args.name
    );
    let (requests, outgoing) = tokio::sync::mpsc::channel(64);
    let open = v1::OpenSubscription { name: args.name.clone(), credit: 0 };
    requests.send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Open(open)) }).await?;
    let mut responses = client
        .subscriptions()
        .subscribe(client.request(ReceiverStream::new(outgoing)))
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let mut received = 0u64;
    while args.count.is_none_or(|count| received < count) {
        let Some(message) = responses.message().await.map_err(ClientError::from)? else { break };
        let Some(v1::subscribe_response::Message::Delivery(delivery)) = message.message else { continue };
        print_json("tio.v1.Delivery", &delivery)?;
        if let Some(amendment) = &delivery.amendment {
            // Said in words too: the receiving system must act on it, not just store it.
            eprintln!("{}", tio_client::describe_amendment(&delivery, amendment));
        }
        received += 1;
        if !args.no_ack {
            let ack = v1::Ack { delivery_numbers: vec![delivery.delivery_number] };
            requests.send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Ack(ack)) }).await?;
        }
    }
    // Let the last ack reach the server before the stream closes.
    drop(requests);
    while let Ok(Some(_)) = responses.message().await {}
    Ok(())
}

fn share_reason(text: &str) -> Result<v1::SafeguardingReason, UsageError> {
    named(
        "--reason",
        text,
        "SAFEGUARDING_REASON_",
        v1::SafeguardingReason::from_str_name,
        v1::SafeguardingReason::Unspecified,
        "risk-of-significant-harm, section-47-enquiry, section-17-assessment, police-protection, court-order or other",
    )
}

/// Parses a `--flag` date such as 2027-01-29.
pub(crate) fn date_value(flag: &str, text: &str) -> Result<v1::Date, UsageError> {
    let date: jiff::civil::Date =
        text.parse().map_err(|_| UsageError::new(format!("{flag} `{text}`: expected a date such as 2027-01-29")))?;
    Ok(v1::Date { year: i32::from(date.year()), month: i32::from(date.month()), day: i32::from(date.day()) })
}

/// `tio safeguarding`.
pub(crate) async fn safeguarding(command: SafeguardingCommand) -> anyhow::Result<()> {
    let record = match command {
        SafeguardingCommand::Declare {
            nhs_number,
            reason,
            reason_text,
            categories,
            agencies,
            sectors,
            expires,
            review_family_notification_by,
            connection,
        } => {
            let request = v1::DeclareSafeguardingShareRequest {
                child: child(&nhs_number)?,
                reason: share_reason(&reason)? as i32,
                reason_text,
                categories: category_values("--categories", &categories)?,
                agency_ids: agencies,
                sectors: sector_values(&sectors)?,
                starts: None,
                expires: expires.as_deref().map(|text| parse_time("--expires", text)).transpose()?,
                review_family_notification_by: review_family_notification_by
                    .as_deref()
                    .map(|text| date_value("--review-family-notification-by", text))
                    .transpose()?,
            };
            let client = connection.connect_agency().await?;
            let response = client.safeguarding().declare_safeguarding_share(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        SafeguardingCommand::Renew { nhs_number, share_id, reason, reason_text, expires, connection } => {
            let request = v1::RenewSafeguardingShareRequest {
                child: child(&nhs_number)?,
                share_id,
                reason: share_reason(&reason)? as i32,
                reason_text,
                expires: expires.as_deref().map(|text| parse_time("--expires", text)).transpose()?,
            };
            let client = connection.connect_agency().await?;
            let response = client.safeguarding().renew_safeguarding_share(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        SafeguardingCommand::End { nhs_number, share_id, reason, connection } => {
            let request = v1::EndSafeguardingShareRequest { child: child(&nhs_number)?, share_id, reason };
            let client = connection.connect_agency().await?;
            let response = client.safeguarding().end_safeguarding_share(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        SafeguardingCommand::List { nhs_number, connection } => {
            let request = v1::ListSafeguardingSharesRequest { child: child(&nhs_number)? };
            let client = connection.connect_agency().await?;
            let response = client.safeguarding().list_safeguarding_shares(client.request(request)).await;
            for share in &response.map_err(ClientError::from)?.into_inner().shares {
                print_json("tio.v1.SafeguardingShareRecord", share)?;
            }
            return Ok(());
        }
    };
    print_json("tio.v1.SafeguardingShareRecord", &record)
}

/// `tio alerts`.
pub(crate) async fn alerts(command: AlertsCommand) -> anyhow::Result<()> {
    match command {
        AlertsCommand::List { limit, connection } => {
            let client = connection.connect().await?;
            let mut printed = 0;
            let mut page_token = String::new();
            // Bounded by --limit: each page prints at least one alert or ends the list.
            while printed < limit {
                let page_size = u32::try_from(limit - printed).unwrap_or(u32::MAX).min(500);
                let request = v1::ListAlertsRequest { page: Some(v1::PageRequest { page_size, page_token }) };
                let response =
                    client.alerts().list_alerts(client.request(request)).await.map_err(ClientError::from)?.into_inner();
                for alert in response.alerts.iter().take(limit - printed) {
                    print_json("tio.v1.Alert", alert)?;
                    printed += 1;
                }
                page_token = response.page.unwrap_or_default().next_page_token;
                if page_token.is_empty() {
                    break;
                }
            }
            Ok(())
        }
        AlertsCommand::Watch { from, count, no_ack, connection } => {
            let client = connection.connect().await?;
            eprintln!("waiting for alerts (each is printed as a JSON line and acked); press Ctrl-C to stop");
            let (requests, outgoing) = tokio::sync::mpsc::channel(64);
            let open = v1::OpenAlertWatch { credit: 0, from_leaf_index: from };
            requests
                .send(v1::WatchAlertsRequest { message: Some(v1::watch_alerts_request::Message::Open(open)) })
                .await?;
            let mut responses = client
                .alerts()
                .watch_alerts(client.request(ReceiverStream::new(outgoing)))
                .await
                .map_err(ClientError::from)?
                .into_inner();
            let mut received = 0u64;
            while count.is_none_or(|count| received < count) {
                let Some(message) = responses.message().await.map_err(ClientError::from)? else { break };
                let Some(v1::watch_alerts_response::Message::Alert(alert)) = message.message else { continue };
                print_json("tio.v1.Alert", &alert)?;
                received += 1;
                if !no_ack {
                    let ack = v1::AlertAck { through_leaf_index: alert.leaf_index };
                    let message = Some(v1::watch_alerts_request::Message::Ack(ack));
                    requests.send(v1::WatchAlertsRequest { message }).await?;
                }
            }
            // Let the last ack reach the server before the stream closes.
            drop(requests);
            while let Ok(Some(_)) = responses.message().await {}
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_live_profile_a_time_or_a_position() {
        use v1::start_from::From;
        assert!(matches!(start_from("live").unwrap().from, Some(From::Live(_))));
        assert!(matches!(start_from("profile").unwrap().from, Some(From::ProfileThenLive(_))));
        assert!(matches!(start_from("2026-11-23").unwrap().from, Some(From::Since(_))));
        match start_from("position:000000000000000a").unwrap().from {
            Some(From::AfterPosition(position)) => assert_eq!(position.token, [0, 0, 0, 0, 0, 0, 0, 10]),
            other => panic!("{other:?}"),
        }
        assert!(start_from("position:xyz").is_err());
        assert!(start_from("tomorrow").unwrap_err().to_string().contains("expected live, profile"));
    }

    #[test]
    fn enum_flags_take_kebab_or_snake_case() {
        let method = |text| {
            named("--m", text, "CONSENT_METHOD_", v1::ConsentMethod::from_str_name, v1::ConsentMethod::Unspecified, "x")
        };
        assert_eq!(method("in-person").unwrap(), v1::ConsentMethod::InPerson);
        assert_eq!(method("signed_form").unwrap(), v1::ConsentMethod::SignedForm);
        assert!(method("unspecified").is_err());
        assert!(method("carrier-pigeon").unwrap_err().to_string().starts_with("--m `carrier-pigeon`"));
    }
}
