//! The pure domain core of the Tell It Once broker.
//!
//! It holds the identifiers (`NhsNumber`, `Upn`, `AgencyId`), the closed set of record
//! categories, agencies and their permissions, caller identities, consent and care
//! relationships as plain values, the documented size limits, and one pure function,
//! [`decide`], that says whether an agency may publish, read or receive a category of
//! a child, and if not, why. `age` and `ehc` hold the law's dates: ages and the
//! thresholds at 16 and 18, and the statutory clocks of an EHC needs assessment;
//! `objection` holds a family's objections, which refuse what a consent would allow;
//! `protection` the child-protection and looked-after flags shared without consent;
//! `safeguarding` the shares declared where a child may be at risk; `transition` a young
//! person's milestones on the way to adult services, from 14 to 25.
//!
//! It never does I/O, never reads a clock (the time is passed in as `now`), and knows
//! nothing of protobuf, tonic or storage: the broker converts to and from these types
//! at its edge. Every access check in the broker calls [`decide`].

#![warn(missing_docs)]

pub mod age;
mod agency;
pub mod calendar;
mod care;
mod category;
mod consent;
mod decision;
pub mod ehc;
mod field;
mod identity;
pub mod limits;
mod names;
mod nhs_number;
mod numbered_id;
pub mod objection;
pub mod protection;
pub mod retention;
pub mod safeguarding;
mod time;
pub mod transition;
mod upn;

pub use agency::{Agency, AgencyId, OrganisationCodeKind, Sector};
pub use care::{CareRelationship, RelationshipId, RelationshipKind, RelationshipRecord};
pub use category::{Category, CategorySet};
pub use consent::{
    Consent, ConsentEvidence, ConsentGiverRole, ConsentId, ConsentMethod, ConsentRevision, ConsentState,
    GiverAuthority, LawfulBasis, Recipients, SpecialCategoryCondition, Validity, recording,
};
pub use decision::{AccessRequest, Action, Decision, DenyReason, Facts, Grant, WithoutConsent, decide};
pub use field::FieldViolation;
pub use identity::{Identity, IdentityError, ROLE_NOT_PERMITTED, Role, Service, URN_PREFIX};
/// A calendar date with no time zone: a date of birth, a deadline.
pub use jiff::civil::Date;
pub use nhs_number::{NhsNumber, NhsNumberError, NhsNumberPolicy, NhsNumberRange};
pub use objection::{Objection, ObjectionId, ObjectionRevision, ObjectionState};
pub use time::Timestamp;
pub use upn::{Upn, UpnError};
