# The family's subject-access report, in English (the reference catalogue: every other
# language has the same messages). Organisation names, ids and what agencies recorded
# are shown as recorded, never translated.

language-name = English
report-title = Who has seen your child's information
report-intro = This report lists every time an organisation shared, received, looked at or was refused information about your child through Tell It Once, and why it was allowed or refused. The names of organisations, and the references they recorded, are shown exactly as they were recorded.
report-child = Child's NHS number: { $masked }
report-made = Made on { $date }.
report-count = { $count ->
    [one] One thing is recorded.
   *[other] { $count } things are recorded.
}
report-empty = Nothing is recorded about your child.
report-questions = If anything here looks wrong, or you want to know more, ask the professional who gave you this report. You can also contact the data protection officer of any organisation listed.
column-when = Date
column-who = Organisation
column-what = What happened
column-information = Which information
column-why = Why
language-label = Language
language-switch = Show in this language
download-pdf = Download as PDF
print-hint = To print this report, use your browser's Print command.
page-number = Page { $page }

why-consent = allowed by the consent you gave ({ $consent }, version { $revision })
why-relationship = allowed because it is involved in your child's care
why-safeguarding = shared to keep your child safe, without consent (a safeguarding share)
why-protection = shared under the council's child-protection flag, without consent
why-family = recorded when you asked
why-own-record = the organisation's own record
why-audit = an audit, or a request like this one, for who saw what
why-failed = it did not happen because of a fault in the system
why-refused = refused: { $reason }

reason-agency_suspended = the organisation is suspended
reason-not_permitted_for_category = the organisation may not handle this kind of information
reason-not_involved = the organisation is not involved in your child's care
reason-no_consent = no consent covers it
reason-consent_superseded = your child now decides, and has not agreed
reason-consent_not_yet_valid = the consent had not started yet
reason-consent_expired = the consent had ended
reason-consent_withdrawn = the consent was withdrawn
reason-consent_lapsed = the consent was a parent's, and your child is now 18 and decides
reason-recipient_excluded = you excluded this organisation
reason-objection = you objected to this organisation receiving it
reason-not_permitted_for_safeguarding = the organisation may not make safeguarding shares
reason-may_not_run_ehc_assessments = the organisation may not run EHC needs assessments
reason-not_asked_for_advice = the organisation was not asked for this advice
reason-not_the_milestone_owner = the organisation is not responsible for that step
reason-role_not_permitted = this kind of user may not do this
reason-other = a reason recorded as "{ $code }"

action-publish = shared an update
action-profile_read = looked at your child's record
action-delivery = was sent an update
action-delivery_skipped = was not sent an update
action-consent_recorded = recorded your consent
action-consent_withdrawn = recorded that you withdrew consent
action-consent_read = looked at the consent record
action-relationship_declared = said it is involved in your child's care
action-relationship_ended = said it is no longer involved in your child's care
action-relationship_read = checked its own involvement
action-subscription_changed = changed what it receives
action-admin = made an administrative change
action-audit_read = looked at this record of who saw what
action-authentication = was refused when it tried to connect
action-objection_raised = recorded your objection
action-objection_withdrawn = recorded that you withdrew an objection
action-safeguarding_declared = started a safeguarding share
action-safeguarding_renewed = renewed a safeguarding share
action-safeguarding_ended = ended a safeguarding share
action-update_corrected = corrected an update it had shared
action-update_retracted = withdrew an update it had shared by mistake
action-correction_sent = was sent a correction of an update it had been given
action-retraction_sent = was told an update it had been given was withdrawn
action-erasure_sent = was told to delete an update it had been given
action-consent_review_due = asked for consent to be checked again as your child grows up
action-ehc_assessment_recorded = recorded a step of your child's EHC needs assessment
action-ehc_assessment_read = looked at your child's EHC needs assessment
action-ehc_deadline_alert = was reminded of an EHC needs assessment deadline
action-transition_recorded = recorded a step of the move to adult services
action-transition_read = looked at the plan for the move to adult services
action-transition_alert = was reminded that a step of the move to adult services was late
action-send_metrics_read = looked at figures for the area (numbers only)
action-other = did something recorded as "{ $code }"

category-identity_and_contacts = name, contacts and language
category-communication_needs = things to know about your child
category-health_summary = health summary
category-send_support = special educational needs support
category-education_placement = school or college
category-social_care_involvement = social care involvement
category-transition_to_adulthood = preparing for adulthood
category-other = information recorded as "{ $code }"
