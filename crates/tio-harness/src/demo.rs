//! `tio demo`: the Tell It Once story, told against a real server over mutual TLS and
//! checked step by step. It is the quickest way to see the broker work, and a smoke test:
//! any outcome that differs from the story stops it with exit status 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tio_auditor::verify::Verdict;
use tio_client::{Client, ConnectionSettings};
use tio_core::NhsNumber;
use tio_proto::v1;
use tokio_stream::wrappers::ReceiverStream;

use crate::own_server::OwnServer;
use crate::{HarnessError, Result, RunningServer, check, unexpected};

/// Amelia Nowak: fictional, with a test-range NHS number.
const AMELIA: &str = "9990079196";

/// How long the story waits for a delivery that should come.
const DELIVERY_WAIT: Duration = Duration::from_secs(15);

/// How long it watches for a delivery that should not come.
const SILENCE_WAIT: Duration = Duration::from_millis(1500);

/// Where the demo tells its story.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The `tio` binary, to start a development server with.
    pub tio: PathBuf,
    /// Keep the server's data (and the auditor's export) here; a temporary directory,
    /// removed afterwards, if `None`.
    pub data_dir: Option<PathBuf>,
    /// Tell the story against this running development server instead of starting one.
    pub server: Option<RunningServer>,
}

/// Runs `tio demo`: tells the story, printing each step and what was checked; an
/// outcome that differs from the story is an error.
pub fn run(options: &DemoOptions) -> Result<()> {
    let runtime = crate::runtime()?;
    let (server, pki, own) = match &options.server {
        Some(running) => (running.url.clone(), running.dev_pki.clone(), None),
        None => {
            let own = OwnServer::start(&options.tio, options.data_dir.as_deref(), true)?;
            (own.url().to_owned(), own.data_dir().join("dev-pki"), Some(own))
        }
    };
    // The auditor's export is kept only where the user asked for a data directory;
    // anything else is temporary, and no path to it is printed.
    let keep = options.data_dir.clone().filter(|_| own.is_some());
    let outcome = runtime.block_on(async {
        let story = Story::connect(&server, &pki, keep).await?;
        story.clear_earlier_runs().await?;
        let told = story.tell().await;
        // Durable subscriptions outlive the story; left behind, an agency's one copy of
        // the next run's updates would go to them instead of the next run's own. Best
        // effort: the next run clears whatever this leaves, and the story's own outcome
        // is what this run reports.
        if let Err(err) = story.delete_subscriptions().await {
            println!("(could not delete the story's subscriptions: {err}; the next run will)");
        }
        told
    });
    if own.is_some() && options.data_dir.is_none() {
        println!(
            "\n(The development server stops now, and its temporary data directory and log go with it; \
             `tio demo --data-dir DIR` keeps them.)"
        );
    }
    drop(own);
    match outcome {
        Ok(()) => {
            println!("\nThe story checked out: every outcome was as it should be.");
            Ok(())
        }
        Err(err) => {
            println!("\nThe story did NOT check out.");
            Err(err)
        }
    }
}

/// The people of the story, each connected as their organisation's system.
struct Story {
    server: String,
    /// Where to keep the auditor's export and the log's key, if anywhere.
    keep: Option<PathBuf>,
    child: NhsNumber,
    run: String,
    hospital: Client,
    school: Client,
    send_team: Client,
    social_care: Client,
    auditor: Client,
}

fn step(number: u32, text: &str) {
    println!("\n{number}. {text}");
}

fn ok(text: &str) {
    println!("   ok: {text}");
}

/// The categories of a profile, by name.
fn names(categories: &[v1::Category]) -> String {
    if categories.is_empty() {
        return "nothing".to_owned();
    }
    categories
        .iter()
        .map(|c| c.as_str_name().trim_start_matches("CATEGORY_").to_lowercase().replace('_', " "))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Story {
    async fn connect(server: &str, pki: &Path, keep: Option<PathBuf>) -> Result<Story> {
        let client = |name: &'static str, professional: &str| {
            let settings = ConnectionSettings {
                professional: Some(professional.to_owned()),
                ..ConnectionSettings::from_dev_pki(server, pki, name)
            };
            async move {
                Client::connect(&settings).await.map_err(|source| HarnessError::Connect { name: name.into(), source })
            }
        };
        let mut run = [0u8; 4];
        getrandom::fill(&mut run).map_err(|err| HarnessError::Unexpected(format!("no randomness: {err}")))?;
        Ok(Story {
            server: server.to_owned(),
            keep,
            child: NhsNumber::parse_checked(AMELIA)
                .map_err(|err| HarnessError::Unexpected(format!("the story's NHS number: {err}")))?,
            run: hex::encode(run),
            hospital: client("hospital", "dr-okafor").await?,
            school: client("school", "senco-patel").await?,
            send_team: client("send-team", "caseworker-jones").await?,
            social_care: client("social-care", "sw-hughes").await?,
            auditor: client("auditor", "dpo-evans").await?,
        })
    }

    /// Puts a server that has told the story before back where the story starts: no
    /// subscriptions of the story's agencies left over, and no consent for Amelia still
    /// active (a run that stopped half way leaves one, and the story checks that a
    /// withdrawal stops the school seeing her health summary). Both are audited, as
    /// any such change is. A fresh server has neither, and nothing is said.
    async fn clear_earlier_runs(&self) -> Result<()> {
        /// Pages of 100 consents read at most: far more than any run of the story leaves.
        const MAX_CONSENT_PAGES: usize = 100;
        let subscriptions = self.delete_subscriptions().await?;
        let mut withdrawn = 0;
        let mut page_token = String::new();
        // Bounded, should a server hand back pages without end.
        for _ in 0..MAX_CONSENT_PAGES {
            let request = v1::ListConsentsRequest {
                child: self.child_ref(),
                page: Some(v1::PageRequest { page_size: 100, page_token: page_token.clone() }),
            };
            let response = self
                .hospital
                .consents()
                .list_consents(self.hospital.request(request))
                .await
                .map_err(tio_client::ClientError::from)?
                .into_inner();
            for consent in response.consents {
                if consent.state() != v1::ConsentState::Active || consent.recorded_by_agency_id != "hospital" {
                    continue;
                }
                self.withdraw_consent(consent.consent_id, "the demo story starts again").await?;
                withdrawn += 1;
            }
            page_token = response.page.map(|page| page.next_page_token).unwrap_or_default();
            if page_token.is_empty() {
                break;
            }
        }
        if subscriptions + withdrawn > 0 {
            println!(
                "(this server has told the story before: deleted {subscriptions} subscriptions and withdrew \
                 {withdrawn} consents left by earlier runs)\n"
            );
        }
        Ok(())
    }

    /// The hospital withdraws a consent for Amelia on the family's instruction.
    async fn withdraw_consent(&self, consent_id: String, reason: &str) -> Result<()> {
        let withdraw = v1::WithdrawConsentRequest {
            child: self.child_ref(),
            consent_id,
            reason: reason.into(),
            evidence: Some(evidence()),
        };
        self.hospital
            .consents()
            .withdraw_consent(self.hospital.request(withdraw))
            .await
            .map_err(tio_client::ClientError::from)?;
        Ok(())
    }

    /// Deletes every subscription of the story's agencies that the story made (named
    /// `demo-...`); returns how many.
    async fn delete_subscriptions(&self) -> Result<usize> {
        let mut deleted = 0;
        for client in [&self.send_team, &self.school, &self.social_care] {
            let listed = client
                .subscriptions()
                .list_subscriptions(client.request(v1::ListSubscriptionsRequest {}))
                .await
                .map_err(tio_client::ClientError::from)?
                .into_inner();
            for subscription in listed.subscriptions.into_iter().filter(|s| s.name.starts_with("demo-")) {
                client
                    .subscriptions()
                    .delete_subscription(client.request(v1::DeleteSubscriptionRequest { name: subscription.name }))
                    .await
                    .map_err(tio_client::ClientError::from)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn child_ref(&self) -> Option<v1::ChildRef> {
        Some(v1::ChildRef { nhs_number: self.child.digits() })
    }

    async fn publish(
        &self,
        category: v1::Category,
        value: v1::category_value::Value,
        key: &str,
    ) -> Result<v1::PublishResponse> {
        let request = v1::PublishRequest {
            child: self.child_ref(),
            category: category as i32,
            value: Some(v1::CategoryValue { value: Some(value) }),
            source_reference: format!("EPR-{}", self.run),
            idempotency_key: format!("demo-{}-{key}", self.run),
            recorded_at: None,
        };
        let response = self.hospital.records().publish(self.hospital.request(request)).await;
        Ok(response.map_err(tio_client::ClientError::from)?.into_inner())
    }

    async fn profile(&self, client: &Client) -> Result<Vec<v1::Category>> {
        let request = v1::GetProfileRequest { child: self.child_ref(), categories: Vec::new() };
        let response =
            client.records().get_profile(client.request(request)).await.map_err(tio_client::ClientError::from)?;
        Ok(response.get_ref().entries.iter().map(|entry| entry.category()).collect())
    }

    fn consent(
        &self,
        categories: &[v1::Category],
        recipients: v1::Recipients,
        purpose: &str,
    ) -> v1::RecordConsentRequest {
        v1::RecordConsentRequest {
            authority: None,
            child: self.child_ref(),
            giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
            giver_name: "Anna Nowak".into(),
            categories: categories.iter().map(|c| *c as i32).collect(),
            recipients: Some(recipients),
            purpose: purpose.into(),
            lawful_basis: v1::LawfulBasis::PublicTask as i32,
            special_category_condition: v1::SpecialCategoryCondition::HealthOrSocialCare as i32,
            valid: None,
            evidence: Some(evidence()),
        }
    }

    async fn record_consent(&self, request: v1::RecordConsentRequest) -> Result<v1::ConsentRecord> {
        let response = self.hospital.consents().record_consent(self.hospital.request(request)).await;
        Ok(response.map_err(tio_client::ClientError::from)?.into_inner())
    }

    async fn declare(&self, client: &Client, kind: v1::RelationshipKind, reference: &str) -> Result<()> {
        let request =
            v1::DeclareRelationshipRequest { child: self.child_ref(), kind: kind as i32, reference: reference.into() };
        client
            .relationships()
            .declare_relationship(client.request(request))
            .await
            .map_err(tio_client::ClientError::from)?;
        Ok(())
    }

    async fn subscribe(&self, client: &Client, name: &str, categories: &[v1::Category]) -> Result<Deliveries> {
        let name = format!("{name}-{}", self.run);
        let request = v1::CreateSubscriptionRequest {
            name: name.clone(),
            categories: categories.iter().map(|c| *c as i32).collect(),
            start: Some(v1::StartFrom { from: Some(v1::start_from::From::Live(v1::Live {})) }),
            max_in_flight: 0,
        };
        client
            .subscriptions()
            .create_subscription(client.request(request))
            .await
            .map_err(tio_client::ClientError::from)?;
        let (requests, outgoing) = tokio::sync::mpsc::channel(16);
        let open = v1::OpenSubscription { name, credit: 0 };
        requests.send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Open(open)) }).await?;
        let responses = client
            .subscriptions()
            .subscribe(client.request(ReceiverStream::new(outgoing)))
            .await
            .map_err(tio_client::ClientError::from)?
            .into_inner();
        Ok(Deliveries { requests, responses })
    }

    async fn tell(&self) -> Result<()> {
        use v1::Category::{CommunicationNeeds, HealthSummary};
        println!("Tell It Once: the story of Amelia Nowak, aged 7, NHS number {}", self.child.reveal());
        println!("(fictional people; a test-range NHS number; server {})", self.server);

        step(1, "Riverside Children's Hospital records how Amelia communicates, and what everyone must know.");
        let needs = v1::CommunicationNeeds {
            how_i_communicate: "Amelia uses Makaton signs and a picture book; she understands short sentences.".into(),
            how_i_show_pain: "She goes quiet and holds her ears.".into(),
            things_you_must_know: vec![
                "Amelia's family speaks Polish at home; her mother Anna needs a Polish interpreter.".into(),
                "Loud rooms overwhelm her: offer a quiet space.".into(),
            ],
            ..Default::default()
        };
        let first = self
            .publish(CommunicationNeeds, v1::category_value::Value::CommunicationNeeds(needs.clone()), "needs-1")
            .await?;
        ok(&format!("stored durably as update {}", first.update_id));

        step(2, "The hospital records her health summary.");
        let health = v1::HealthSummary {
            conditions: vec![v1::Condition { description: "Epilepsy (focal seizures)".into(), ..Default::default() }],
            medications: vec![v1::Medication {
                name: "Lamotrigine".into(),
                dose: "25 mg twice a day".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        self.publish(HealthSummary, v1::category_value::Value::HealthSummary(health.clone()), "health-1").await?;
        ok("stored durably");

        step(3, "Anna, Amelia's mother, consents to her school and the council SEND team seeing both.");
        let education = v1::Recipients { sectors: vec![v1::Sector::Education as i32], ..Default::default() };
        let purpose = "So that Amelia's school and SEND caseworker can support her without asking again.";
        let consent =
            self.record_consent(self.consent(&[CommunicationNeeds, HealthSummary], education.clone(), purpose)).await?;
        ok(&format!(
            "consent {} recorded by the hospital: in person, in Polish with an interpreter; lawful basis public task, Article 9(2)(h)",
            consent.consent_id
        ));

        step(4, "Meadow Primary School enrols Amelia and reads her profile instead of asking the family again.");
        self.declare(&self.school, v1::RelationshipKind::Enrolment, "reception class").await?;
        let seen = self.profile(&self.school).await?;
        check!(
            seen == [CommunicationNeeds, HealthSummary],
            "the school should see both categories, saw {}",
            names(&seen)
        );
        ok(&format!("the school sees: {}", names(&seen)));

        step(5, "The council SEND team is allocated and subscribes; the hospital shares an update; it arrives live.");
        self.declare(&self.send_team, v1::RelationshipKind::Allocation, "EHC needs assessment").await?;
        let mut send_team = self.subscribe(&self.send_team, "demo-send", &[CommunicationNeeds, HealthSummary]).await?;
        let mut school = self.subscribe(&self.school, "demo-school", &[HealthSummary]).await?;
        let mut social_care =
            self.subscribe(&self.social_care, "demo-sc", &[CommunicationNeeds, HealthSummary]).await?;
        let mut updated = needs.clone();
        updated.things_you_must_know.push("She now uses a communication app on a tablet.".into());
        let second =
            self.publish(CommunicationNeeds, v1::category_value::Value::CommunicationNeeds(updated), "needs-2").await?;
        let Some(delivery) = send_team.next(DELIVERY_WAIT).await? else {
            unexpected!("the SEND team received nothing")
        };
        check!(delivery.update_id == second.update_id, "the SEND team received another update");
        check!(
            delivery.child.as_ref().map(|c| c.nhs_number.as_str()) == Some(AMELIA),
            "the delivery names another child"
        );
        send_team.ack(delivery.delivery_number).await?;
        ok(&format!(
            "the SEND team received delivery {} (communication needs) and acknowledged it",
            delivery.delivery_number
        ));

        step(6, "Children's social care, neither involved nor consented, asks for Amelia's profile.");
        let seen = self.profile(&self.social_care).await?;
        check!(seen.is_empty(), "social care should see nothing, saw {}", names(&seen));
        check!(social_care.next(SILENCE_WAIT).await?.is_none(), "social care received an update");
        ok("it is shown nothing, exactly as if nothing were recorded, and received nothing");

        step(
            7,
            "Anna withdraws consent for the school to see Amelia's health summary; the next one reaches the SEND team only.",
        );
        self.withdraw_consent(consent.consent_id.clone(), "Anna would rather the school did not see health details")
            .await?;
        self.record_consent(self.consent(&[CommunicationNeeds], education, purpose)).await?;
        let send_team_only = v1::Recipients { agency_ids: vec!["send-team".into()], ..Default::default() };
        let health_purpose = "So that the SEND caseworker can plan for Amelia's epilepsy.";
        self.record_consent(self.consent(&[HealthSummary], send_team_only, health_purpose)).await?;
        let mut changed = health.clone();
        changed.medications[0].dose = "50 mg twice a day".into();
        let third = self.publish(HealthSummary, v1::category_value::Value::HealthSummary(changed), "health-2").await?;
        let Some(delivery) = send_team.next(DELIVERY_WAIT).await? else {
            unexpected!("the SEND team received nothing")
        };
        check!(delivery.update_id == third.update_id, "the SEND team received another update");
        send_team.ack(delivery.delivery_number).await?;
        check!(
            school.next(SILENCE_WAIT).await?.is_none(),
            "the school received the health summary after the withdrawal"
        );
        let seen = self.profile(&self.school).await?;
        check!(
            seen == [CommunicationNeeds],
            "the school should now see communication needs only, saw {}",
            names(&seen)
        );
        ok(
            "the SEND team received the new health summary; the school received nothing and now sees communication needs only",
        );

        step(
            8,
            "Children's social care records that Amelia now has a child protection plan. The hospital, involved in her care, sees it without consent (as CP-IS shares it with unscheduled care), and her social worker is told at once.",
        );
        self.protection_flag().await?;

        step(
            9,
            "The hospital finds that step 5's update was meant for another child and retracts it. The SEND team and the school, which were given it, are told; Amelia's profile goes back to what it said before.",
        );
        let retraction = v1::RetractUpdateRequest {
            child: self.child_ref(),
            update_id: second.update_id.clone(),
            reason: "Entered on the wrong child's record: the tablet app is a classmate's.".into(),
            source_reference: format!("EPR-{}-r", self.run),
        };
        self.hospital
            .records()
            .retract_update(self.hospital.request(retraction))
            .await
            .map_err(tio_client::ClientError::from)?;
        // The SEND team received it on its subscription; the school read it in its
        // profile at step 7 (its subscription takes only health summaries, and carries
        // the notice all the same).
        for (name, stream) in [("the SEND team", &mut send_team), ("the school", &mut school)] {
            let Some(delivery) = stream.next(DELIVERY_WAIT).await? else {
                unexpected!("{name} was not told of the retraction")
            };
            let told = delivery.amendment.as_ref().is_some_and(|amendment| {
                amendment.kind() == v1::AmendmentKind::Retraction && amendment.amended_update_id == second.update_id
            });
            check!(told && delivery.value.is_none(), "{name} received something other than the retraction");
            stream.ack(delivery.delivery_number).await?;
        }
        check!(social_care.next(SILENCE_WAIT).await?.is_none(), "social care, never given it, was told of it");
        let request = v1::GetProfileRequest { child: self.child_ref(), categories: vec![CommunicationNeeds as i32] };
        let profile = self.school.records().get_profile(self.school.request(request)).await;
        let profile = profile.map_err(tio_client::ClientError::from)?.into_inner();
        check!(
            profile.entries.first().map(|entry| entry.update_id.as_str()) == Some(first.update_id.as_str()),
            "the school's profile should show step 1's value again"
        );
        ok(
            "the SEND team and the school were each sent a retraction; social care, never given it, was not; the profile shows step 1's value again",
        );

        step(
            10,
            "Meadow Primary asks the council for an EHC needs assessment. The SEND team opens it, decides to assess and asks the hospital for medical advice: the broker offers the health summary the hospital already recorded, and with the hospital's and Anna's agreement it answers the request. Anna is not asked again.",
        );
        self.assessment().await?;

        step(11, "The auditor answers Anna's question: who saw Amelia's information, when, and why?");
        let request = v1::SubjectAccessReportRequest { child: self.child_ref(), ..Default::default() };
        let lines = self.auditor.audit().subject_access_report(self.auditor.request(request)).await;
        let lines = lines.map_err(tio_client::ClientError::from)?.into_inner().lines;
        check!(
            lines.iter().any(|l| l.agency_id == "social-care" && l.outcome() == v1::AuditOutcome::Denied),
            "the refusal of social care is not in the report"
        );
        check!(
            lines.iter().any(|l| l.agency_id == "send-team" && l.action() == v1::AuditAction::Delivery),
            "the delivery to the SEND team is not in the report"
        );
        println!();
        let mut out = std::io::stdout().lock();
        tio_auditor::report::write_text_report(&mut out, &self.child, &lines)
            .and_then(|()| out.flush())
            .map_err(HarnessError::io("print the report"))?;
        drop(out);

        step(12, "The auditor exports the audit log and verifies it offline, with the log's public key.");
        drop((send_team, school, social_care));
        self.verify_log().await?;
        Ok(())
    }

    /// The second act: a child-protection flag, a hospital's read of it without
    /// consent, and the alert that tells the social worker.
    async fn protection_flag(&self) -> Result<()> {
        /// Looks for the alert this many times, 100 ms apart (it comes within half a second).
        const ALERT_LOOKS: usize = 150;
        /// Pages of earlier runs' alerts read at most: far more than runs of the story leave.
        const MAX_ALERT_PAGES: usize = 100;
        use v1::Category::SocialCareInvolvement;
        let alerts = || async {
            let request =
                v1::ListAlertsRequest { page: Some(v1::PageRequest { page_size: 500, page_token: String::new() }) };
            let response = self.social_care.alerts().list_alerts(self.social_care.request(request)).await;
            Ok::<_, HarnessError>(response.map_err(tio_client::ClientError::from)?.into_inner())
        };
        // Alerts of earlier runs are not this run's.
        let mut before = alerts().await?;
        for _ in 0..MAX_ALERT_PAGES {
            let next = before.page.as_ref().map(|page| page.next_page_token.clone()).unwrap_or_default();
            if next.is_empty() {
                break;
            }
            let request = v1::ListAlertsRequest { page: Some(v1::PageRequest { page_size: 500, page_token: next }) };
            let response = self.social_care.alerts().list_alerts(self.social_care.request(request)).await;
            before = response.map_err(tio_client::ClientError::from)?.into_inner();
        }
        let seen_before = before.alerts.last().map(|alert| alert.leaf_index);
        let plan = v1::SocialCareInvolvement {
            level: v1::SocialCareLevel::ChildProtection as i32,
            team: "Children's Services North".into(),
            lawful_basis: v1::LawfulBasis::PublicTask as i32,
            special_category_condition: v1::SpecialCategoryCondition::HealthOrSocialCare as i32,
            ..Default::default()
        };
        let request = v1::PublishRequest {
            child: self.child_ref(),
            category: SocialCareInvolvement as i32,
            value: Some(v1::CategoryValue { value: Some(v1::category_value::Value::SocialCareInvolvement(plan)) }),
            source_reference: format!("LCS-{}", self.run),
            idempotency_key: format!("demo-{}-cp-plan", self.run),
            recorded_at: None,
        };
        self.social_care
            .records()
            .publish(self.social_care.request(request))
            .await
            .map_err(tio_client::ClientError::from)?;
        let read_at = std::time::Instant::now();
        let seen = self.profile(&self.hospital).await?;
        check!(seen.contains(&SocialCareInvolvement), "the hospital should see the flag, saw {}", names(&seen));
        let school = self.profile(&self.school).await?;
        check!(!school.contains(&SocialCareInvolvement), "the school should not see the flag");
        ok(
            "the hospital sees the child-protection flag, without consent, on the council's lawful basis; the school does not",
        );
        for _ in 0..ALERT_LOOKS {
            let fresh = alerts().await?;
            let alert = fresh.alerts.iter().find(|alert| {
                seen_before.is_none_or(|before| alert.leaf_index > before)
                    && alert.agency_id == "hospital"
                    && alert.kind == "protection_flag_access"
            });
            if let Some(alert) = alert {
                ok(&format!(
                    "the social worker's alert: the hospital ({}) read Amelia's flag; it arrived {} ms after the read",
                    alert.professional_id,
                    read_at.elapsed().as_millis()
                ));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unexpected!("no alert reached the social worker")
    }

    /// The third act: an EHC needs assessment in which advice already given answers the
    /// medical advice request (regulation 6(4)), and its clocks.
    async fn assessment(&self) -> Result<()> {
        let failed = |err: tonic::Status| tio_client::ClientError::from(err);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let today = tio_core::Timestamp::from_unix_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX))
            .uk_date()
            .ok_or_else(|| HarnessError::Unexpected("the clock is out of range".to_owned()))?;
        let today =
            v1::Date { year: i32::from(today.year()), month: i32::from(today.month()), day: i32::from(today.day()) };
        let ehc = || self.send_team.ehc();
        let open = v1::OpenAssessmentRequest {
            child: self.child_ref(),
            request_received: Some(today),
            requested_by: v1::AssessmentRequester::Agency as i32,
            requested_by_agency_id: "school".into(),
        };
        let opened = ehc().open_assessment(self.send_team.request(open)).await.map_err(failed)?.into_inner();
        let id = opened.assessment_id.clone();
        let decision = v1::record_assessment_step_request::Step::Decision(v1::AssessmentDecision {
            decision: v1::AssessDecision::Assess as i32,
            notified_on: Some(today),
        });
        let decide = v1::RecordAssessmentStepRequest {
            child: self.child_ref(),
            assessment_id: id.clone(),
            step: Some(decision),
        };
        ehc().record_assessment_step(self.send_team.request(decide)).await.map_err(failed)?;
        let ask = v1::RequestAdviceRequest {
            child: self.child_ref(),
            assessment_id: id.clone(),
            adviser_type: v1::AdviserType::MedicalHealth as i32,
            agency_id: "hospital".into(),
            asked_on: Some(today),
        };
        let asked = ehc().request_advice(self.send_team.request(ask)).await.map_err(failed)?.into_inner();
        let offered =
            asked.advice.iter().find(|request| request.adviser_type() == v1::AdviserType::MedicalHealth).and_then(
                |request| request.already_given.iter().find(|offer| offer.category() == v1::Category::HealthSummary),
            );
        let Some(offered) = offered else { unexpected!("the broker offered none of the hospital's advice") };
        ok(&format!(
            "the broker offers the hospital's health summary, update {}, as advice already given",
            offered.update_id
        ));
        let agreements = v1::ReuseAgreements { authority: Some(today), adviser: Some(today), family: Some(today) };
        let reuse = v1::AnswerAdviceRequestRequest {
            child: self.child_ref(),
            assessment_id: id.clone(),
            adviser_type: v1::AdviserType::MedicalHealth as i32,
            update_id: offered.update_id.clone(),
            answer: Some(v1::answer_advice_request_request::Answer::AlreadyGiven(agreements)),
        };
        let answered = ehc().answer_advice_request(self.send_team.request(reuse)).await.map_err(failed)?.into_inner();
        let advice = answered.deadlines.iter().find(|deadline| deadline.clock() == v1::AssessmentClock::Advice);
        check!(
            advice.is_some_and(|deadline| deadline.status() == v1::DeadlineStatus::Met),
            "the medical advice should be met at once"
        );
        ok("recorded with the council's, the hospital's and Anna's agreement: the medical advice is in, on day one");
        for line in tio_client::describe_clocks(&answered).lines() {
            println!("   {line}");
        }
        Ok(())
    }

    async fn verify_log(&self) -> Result<()> {
        let work = tempfile::tempdir().map_err(HarnessError::io("make a temporary directory"))?;
        let dir = self.keep.clone().unwrap_or_else(|| work.path().to_owned());
        let export = dir.join(format!("audit-export-{}", self.run));
        let exported = tio_auditor::export::export_log(&self.auditor, &export, false).await?;
        println!("   exported {} entries and the checkpoint of tree size {}", exported.entries, exported.tree_size);
        // As an auditor would: the key from the server, its fingerprint to compare.
        let key = self
            .auditor
            .audit()
            .get_public_key(self.auditor.request(v1::GetPublicKeyRequest {}))
            .await
            .map_err(tio_client::ClientError::from)?
            .into_inner();
        println!("   the log's public key has fingerprint sha256:{}", key.fingerprint);
        let public_key = dir.join("tio-audit.pub");
        std::fs::write(&public_key, format!("{}\n", key.verifier_key))
            .map_err(HarnessError::io(format!("write {}", public_key.display())))?;
        match tio_auditor::verify::verify_export_dir(&export, &public_key, None, false)? {
            Verdict::Verified { verified, signer } => println!(
                "   OK: {} entries match the checkpoint of {} signed by {signer}",
                verified.entries, verified.checkpoint.origin
            ),
            Verdict::Failed(err) => unexpected!("the exported audit log does not verify: {err}"),
        }
        if self.keep.is_some() {
            println!(
                "   kept; verify it again with: tio audit verify {} --public-key {}",
                export.display(),
                public_key.display()
            );
        }
        Ok(())
    }
}

fn evidence() -> v1::ConsentEvidence {
    v1::ConsentEvidence {
        method: v1::ConsentMethod::InPerson as i32,
        reference: "consent form 2026-11 (scanned)".into(),
        language: "pl".into(),
        interpreter_present: true,
        notes: String::new(),
    }
}

/// One open delivery stream.
struct Deliveries {
    requests: tokio::sync::mpsc::Sender<v1::SubscribeRequest>,
    responses: tonic::Streaming<v1::SubscribeResponse>,
}

impl Deliveries {
    /// The next delivery within `wait`, skipping heartbeats; `None` if none came.
    async fn next(&mut self, wait: Duration) -> Result<Option<v1::Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Ok(message) = tokio::time::timeout_at(deadline, self.responses.message()).await else {
                return Ok(None);
            };
            match message.map_err(tio_client::ClientError::from)? {
                None => unexpected!("the delivery stream closed"),
                Some(v1::SubscribeResponse { message: Some(v1::subscribe_response::Message::Delivery(delivery)) }) => {
                    return Ok(Some(delivery));
                }
                Some(_) => continue,
            }
        }
    }

    async fn ack(&self, number: u64) -> Result<()> {
        let ack = v1::Ack { delivery_numbers: vec![number] };
        self.requests.send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Ack(ack)) }).await?;
        Ok(())
    }
}
