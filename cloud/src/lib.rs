//! The cloud coordinator (registry, rollouts, telemetry ingestion) lands here with the fleet issue.
