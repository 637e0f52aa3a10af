//! The lease word's encoding, value by value.

use super::*;

#[test]
fn only_a_closed_fenced_word_names_a_token_to_wait_for() {
    let count = 5 * ONE_SWITCH;
    for phase in [0, Phase::BIT] {
        assert_eq!(awaited_by(phase | FENCED | count | CLOSED), Some(5));
        // A plain close: its switch count is a count, not a token.
        assert_eq!(awaited_by(phase | count | CLOSED), None);
        // Fenced, but held or free: no revoke is pending.
        assert_eq!(awaited_by(phase | FENCED | count | FIRST_TOKEN), None);
        assert_eq!(awaited_by(phase | FENCED | count | FREE), None);
        assert_eq!(awaited_by(phase | count | FIRST_TOKEN), None);
    }
}

#[test]
fn a_switch_counts_once_keeps_the_phase_and_the_fenced_bit_and_clears_the_holder() {
    for word in [
        FIRST_TOKEN,
        CLOSED | (7 * ONE_SWITCH),
        Phase::BIT | FENCED | (3 * ONE_SWITCH) | (FIRST_TOKEN + 9),
        // The count wraps within its bits, touching neither the phase nor the fenced bit.
        Phase::BIT | FENCED | SWITCHES_MASK | FIRST_TOKEN,
    ] {
        let next = switched(word);
        assert_eq!(next & HOLDER_MASK, FREE);
        assert_eq!(next & (Phase::BIT | FENCED), word & (Phase::BIT | FENCED));
        assert_eq!(
            (next & SWITCHES_MASK) / ONE_SWITCH,
            ((word & SWITCHES_MASK) / ONE_SWITCH + 1) % (SWITCHES_MASK / ONE_SWITCH + 1)
        );
    }
}

#[test]
fn every_token_has_a_sequence_word_of_its_own() {
    let words: std::collections::HashSet<*const AtomicU64> = (FIRST_TOKEN
        ..FIRST_TOKEN + TOKENS as u64)
        .map(|token| sequence_of(token) as *const AtomicU64)
        .collect();
    assert_eq!(words.len(), TOKENS);
}
