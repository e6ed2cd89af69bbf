//! The `tio.v1` gRPC contract, generated from `proto/tio/v1/*.proto`.
//!
//! This crate holds generated message and service types and the encoded file
//! descriptor set that server reflection serves. It never holds server logic,
//! validation or policy: those live in `tio-core` and `tio-broker`.

pub mod codec;

/// Generated types of the `tio.v1` package.
#[allow(
    // Generated code: its style is prost's and tonic's, not ours.
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/tio.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every `tio.v1` file and its imports, for
/// `grpc.reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tio_v1_descriptor.bin"));

/// Fully-qualified names of every `tio.v1` service, for health reporting and tests.
pub const SERVICE_NAMES: &[&str] = &[
    "tio.v1.RecordService",
    "tio.v1.ConsentService",
    "tio.v1.CareRelationshipService",
    "tio.v1.SubscriptionService",
    "tio.v1.AlertService",
    "tio.v1.SafeguardingService",
    "tio.v1.EhcAssessmentService",
    "tio.v1.TransitionService",
    "tio.v1.ReportingService",
    "tio.v1.AuditService",
    "tio.v1.AdminService",
];

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every service in the descriptor set is listed in `SERVICE_NAMES` and vice versa,
    /// so health and reflection cannot silently miss one.
    #[test]
    fn service_names_match_descriptor_set() {
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        let mut found: Vec<String> = set
            .file
            .iter()
            .filter(|file| file.package() == "tio.v1")
            .flat_map(|file| file.service.iter().map(|svc| format!("tio.v1.{}", svc.name())))
            .collect();
        found.sort();
        let mut expected: Vec<String> = SERVICE_NAMES.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(found, expected);
    }
}
