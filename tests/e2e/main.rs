//! End-to-end tests: the real `tio` binary, started on a loopback port with real
//! certificates, called as an agency's system would call it.

mod admin;
mod alerts;
mod amendments;
mod assessments;
mod audit_cli;
mod audit_service;
mod bench;
mod cli;
mod config;
mod console;
mod contract;
mod crash;
mod demo;
mod flows;
mod full_disk;
mod lifecycle;
mod maintenance;
mod metrics;
mod mtls;
mod objections;
mod otlp;
mod postgres;
mod protection;
mod python_example;
mod readme;
mod reflection;
mod reporting;
mod retention;
mod safeguarding;
mod store_cli;
mod subscriptions;
mod support;
mod tidy;
mod transitions;
