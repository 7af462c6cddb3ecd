//! Deterministic cluster simulations (turmoil); built in their own issue.
