//! The HDR layout of a recorded histogram: which values each slot (counts-array index)
//! stands for, as every HdrHistogram implementation computes it from the lowest discernible
//! value and the significant digits.

use std::fmt;

/// The slot geometry of an HdrHistogram: slot `index` holds the values
/// `lowest(index)..=highest(index)`.
///
/// ```
/// use taskmeter_tune::Layout;
///
/// let layout = Layout::new(1, 3).unwrap();
/// assert_eq!(layout.range(layout.index_of(2_500)), Some((2_500, 2_501))); // 2 ms wide
/// assert_eq!(layout.range(layout.index_of(40)), Some((40, 40)));
/// assert!(Layout::new(0, 3).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    lowest_discernible: u64,
    significant_digits: u8,
    unit_magnitude: u32,
    half_count_magnitude: u32,
}

impl Layout {
    /// The layout of a histogram with these parameters (HdrHistogram allows 0 to 5 digits).
    pub fn new(lowest_discernible: u64, significant_digits: u8) -> Result<Layout, String> {
        if lowest_discernible == 0 {
            return Err("the lowest discernible value is 0 (it must be at least 1)".into());
        }
        if significant_digits > 5 {
            return Err(format!(
                "{significant_digits} significant digits (HdrHistogram allows 0 to 5)"
            ));
        }
        let largest_single_unit = 2 * 10_u64.pow(u32::from(significant_digits));
        let count_magnitude = 64 - (largest_single_unit - 1).leading_zeros();
        let half_count_magnitude = count_magnitude.max(1) - 1;
        let unit_magnitude = 63 - lowest_discernible.leading_zeros();
        if unit_magnitude + half_count_magnitude > 61 {
            return Err(format!(
                "lowest discernible value {lowest_discernible} with {significant_digits} digits \
                 leaves no room for values"
            ));
        }
        Ok(Layout {
            lowest_discernible,
            significant_digits,
            unit_magnitude,
            half_count_magnitude,
        })
    }

    /// The lowest discernible value.
    pub fn lowest_discernible(&self) -> u64 {
        self.lowest_discernible
    }

    /// The significant decimal digits.
    pub fn significant_digits(&self) -> u8 {
        self.significant_digits
    }

    fn half_count(&self) -> u64 {
        1 << self.half_count_magnitude
    }

    /// How many slots the layout has: slot `slot_count() − 1` ends at or below `u64::MAX`.
    pub fn slot_count(&self) -> u32 {
        let buckets = 64 - self.unit_magnitude - self.half_count_magnitude;
        (buckets + 1) << self.half_count_magnitude
    }

    /// The values slot `index` stands for, `(lowest, highest)`; `None` past `u64`'s range.
    pub fn range(&self, index: u32) -> Option<(u64, u64)> {
        let index = u64::from(index);
        let half_count = self.half_count();
        let mut bucket = (index >> self.half_count_magnitude) as i64 - 1;
        let mut sub_bucket = (index & (half_count - 1)) + half_count;
        if bucket < 0 {
            sub_bucket -= half_count;
            bucket = 0;
        }
        let shift = bucket as u32 + self.unit_magnitude;
        if shift >= 64 || sub_bucket.leading_zeros() < shift {
            return None;
        }
        let lowest = sub_bucket << shift;
        let highest = lowest.checked_add((1_u64 << shift) - 1)?;
        Some((lowest, highest))
    }

    /// The slot that holds `value` (HdrHistogram's `countsArrayIndex`).
    pub fn index_of(&self, value: u64) -> u32 {
        let sub_bucket_mask = ((self.half_count() << 1) - 1) << self.unit_magnitude;
        let leading_zero_base = 64 - self.unit_magnitude - self.half_count_magnitude - 1;
        let bucket = leading_zero_base - (value | sub_bucket_mask).leading_zeros();
        let sub_bucket = value >> (bucket + self.unit_magnitude);
        let index =
            ((u64::from(bucket) + 1) << self.half_count_magnitude) + sub_bucket - self.half_count();
        index as u32
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} significant digits from {}",
            self.significant_digits, self.lowest_discernible
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slot's range starts where the previous one ended, and `index_of` finds the slot
    /// of both ends: the layout tiles `0..` without gaps, as HdrHistogram's does.
    #[test]
    fn slots_tile_the_values_without_gaps() {
        for (lowest, digits) in [(1, 0), (1, 1), (1, 3), (1, 5), (1000, 3), (7, 2)] {
            let layout = Layout::new(lowest, digits).unwrap();
            assert!(layout.range(layout.slot_count() - 1).is_some(), "{layout}");
            assert_eq!(layout.range(layout.slot_count()), None, "{layout}");
            let mut next = 0;
            for index in 0.. {
                let Some((low, high)) = layout.range(index) else {
                    assert!(next > u64::MAX / 4, "{layout}: ends early at {next}");
                    break;
                };
                assert_eq!(low, next, "{layout}: slot {index}");
                assert_eq!(layout.index_of(low), index);
                assert_eq!(layout.index_of(high), index);
                match high.checked_add(1) {
                    Some(after) => next = after,
                    None => break,
                }
            }
        }
    }

    /// At 3 digits and 1 ms, slots are 1 ms wide up to 2,047 and 2 ms wide above it, as in
    /// taskmeter's engine.
    #[test]
    fn widths_are_hdrhistogram_s() {
        let layout = Layout::new(1, 3).unwrap();
        assert_eq!(layout.range(layout.index_of(2_047)), Some((2_047, 2_047)));
        assert_eq!(layout.range(layout.index_of(2_048)), Some((2_048, 2_049)));
        assert_eq!(
            layout.range(layout.index_of(600_000)),
            Some((599_552, 600_063))
        );
    }
}
