//! Samples and the interleaved A/B schedule they are taken on.

/// Measurements of one quantity, one per round.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    /// The middle value (the mean of the two middle ones for an even count); NaN when empty.
    pub fn median(&self) -> f64 {
        let values = self.sorted();
        let n = values.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }
}

impl FromIterator<f64> for Samples {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// The median over rounds of `combine(a, b)` of the values `a` and `b` measured in the same
/// round: each huptime run is compared with the reference run next to it in time, so that a
/// change in the machine's load from one round to the next cancels out.
pub fn paired_median(a: &Samples, b: &Samples, combine: fn(f64, f64) -> f64) -> f64 {
    a.0.iter()
        .zip(&b.0)
        .map(|(&a, &b)| combine(a, b))
        .collect::<Samples>()
        .median()
}

/// The `q`-quantile (0..=1) of `values`, nearest rank; NaN when empty.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Each variant's results, and those of the variants beside them or the error that ended these.
pub type Interleaved<T, E> = (Vec<T>, Result<Vec<T>, E>);

/// Runs every variant once per round (A B A B … or A B C A B C …), so that a change in the
/// machine's load during the run hits all variants alike, each round starting one variant
/// further on (A B C, B C A, C A B, …): what a place in the round brings (the previous
/// variant's leftover work in the kernel, a clock that ramps up) falls on every variant in
/// turn instead of always on the same one. The variants `beside` (the original C huptime,
/// measured for comparison) take their turns in the same rotation; the first error among
/// these ends their runs only and stands for their results. Returns each variant's results,
/// in round order.
pub fn interleave_beside<T, E>(
    rounds: usize,
    variants: &mut [&mut dyn FnMut() -> Result<T, E>],
    beside: &mut [&mut dyn FnMut() -> Result<T, E>],
) -> Result<Interleaved<Vec<T>, E>, E> {
    let mut results: Vec<Vec<T>> = variants.iter().map(|_| Vec::new()).collect();
    let mut beside_results: Result<Vec<Vec<T>>, E> =
        Ok(beside.iter().map(|_| Vec::new()).collect());
    let turns = variants.len() + beside.len();
    for round in 0..rounds {
        for step in 0..turns {
            let turn = (round + step) % turns;
            if let Some(variant) = variants.get_mut(turn) {
                results[turn].push(variant()?);
            } else if let Ok(all) = &mut beside_results {
                let turn = turn - variants.len();
                match beside[turn]() {
                    Ok(value) => all[turn].push(value),
                    Err(error) => beside_results = Err(error),
                }
            }
        }
    }
    Ok((results, beside_results))
}

/// [`interleave_beside`] for variants that measure one value each.
pub fn interleave_samples_beside<E>(
    rounds: usize,
    variants: &mut [&mut dyn FnMut() -> Result<f64, E>],
    beside: &mut [&mut dyn FnMut() -> Result<f64, E>],
) -> Result<Interleaved<Samples, E>, E> {
    let into_samples = |results: Vec<Vec<f64>>| results.into_iter().map(Samples).collect();
    let (results, beside) = interleave_beside(rounds, variants, beside)?;
    Ok((into_samples(results), beside.map(into_samples)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let odd: Samples = [3.0, 1.0, 2.0].into_iter().collect();
        assert_eq!((odd.median(), odd.min(), odd.max()), (2.0, 1.0, 3.0));
        let even: Samples = [4.0, 1.0, 2.0, 3.0].into_iter().collect();
        assert_eq!(even.median(), 2.5);
        assert!(Samples::default().median().is_nan());
    }

    #[test]
    fn pairs_rounds() {
        let a: Samples = [100.0, 200.0, 400.0].into_iter().collect();
        let b: Samples = [110.0, 200.0, 360.0].into_iter().collect();
        assert_eq!(paired_median(&a, &b, |a, b| b / a), 1.0);
        assert_eq!(paired_median(&a, &b, |a, b| b - a), 0.0);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut values, 0.99), 99.0);
        assert_eq!(quantile(&mut values, 1.0), 100.0);
        assert_eq!(quantile(&mut [5.0], 0.99), 5.0);
    }

    #[test]
    fn interleaves_variants_round_by_round() {
        let mut order = Vec::new();
        let order_cell = std::cell::RefCell::new(&mut order);
        let mut a = || -> Result<f64, ()> {
            order_cell.borrow_mut().push('A');
            Ok(1.0)
        };
        let mut b = || -> Result<f64, ()> {
            order_cell.borrow_mut().push('B');
            Ok(2.0)
        };
        let mut c = || -> Result<f64, ()> {
            order_cell.borrow_mut().push('C');
            Ok(3.0)
        };
        let (samples, beside) =
            interleave_samples_beside(3, &mut [&mut a, &mut b], &mut [&mut c]).unwrap();
        assert_eq!(samples[1].median(), 2.0);
        assert_eq!(beside.unwrap()[0].median(), 3.0);
        assert_eq!(order, ['A', 'B', 'C', 'B', 'C', 'A', 'C', 'A', 'B']);
    }

    #[test]
    fn a_failure_beside_ends_only_the_runs_beside() {
        let (mut a_runs, mut b_runs) = (0, 0);
        let mut a = || -> Result<f64, String> {
            a_runs += 1;
            Ok(1.0)
        };
        let mut b = || -> Result<f64, String> {
            b_runs += 1;
            if b_runs == 2 {
                Err("b broke".into())
            } else {
                Ok(2.0)
            }
        };
        let (samples, beside) = interleave_samples_beside(3, &mut [&mut a], &mut [&mut b]).unwrap();
        assert_eq!(samples[0].median(), 1.0);
        assert_eq!(beside.unwrap_err(), "b broke");
        let (_, none) = interleave_samples_beside(1, &mut [&mut a], &mut []).unwrap();
        assert!(none.unwrap().is_empty());
        assert_eq!((a_runs, b_runs), (4, 2));
    }
}
