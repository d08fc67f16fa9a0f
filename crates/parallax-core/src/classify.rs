//! Refusal classification: compliance, partial refusal or refusal, with the evidence.
