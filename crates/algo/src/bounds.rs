//! Hard bounds on the clock's phase and frequency from round-trip delays.
//!
//! Whatever the queueing, an NTP offset is wrong by at most half its
//! round-trip delay: the true offset lies in `[z − δ/2, z + δ/2]`. The upper
//! end overshoots the truth by exactly the outbound delay, the lower end by
//! the return delay, so over n exchanges the tightest ends approach the truth
//! as fast as the minimum one-way delay falls — like 1/n for exponential
//! queueing, where averaging (the Kalman filter) gains only 1/√n. At high
//! jitter that is the difference between milliseconds and a fraction of one
//! in the first minutes.
//!
//! The bounds are kept in the frame of the uncorrected clock (the measured
//! offset plus every correction made since), where the offset is a straight
//! line — phase plus frequency times time — up to wander, allowed for by a
//! margin. Each bound is a strip in the (phase, frequency) plane; their
//! intersection is a convex polygon. Its centroid, with the spread of a
//! uniform density over it, is combined with the estimate by their
//! covariances, and a result still outside the polygon is moved to its
//! nearest point, measured by the estimate's own covariance. If the strips
//! do not intersect, the line model broke (a route or server change, a
//! frequency jump): the bounds are forgotten and rebuilt.

use std::collections::VecDeque;

/// A point of the (phase, scaled frequency) plane, seconds.
type Point = (f64, f64);
/// A 2×2 covariance.
type Cov = [[f64; 2]; 2];

/// Frequencies are scaled by this (s) so both coordinates are seconds.
const SCALE: f64 = 1000.0;
/// Wander margin in standard deviations of the integrated random walk.
const WANDER_SIGMAS: f64 = 4.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Bound {
    time: f64,
    lo: f64,
    hi: f64,
}

/// What [`Bounds::constrain`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Constrained {
    /// Fewer than two bounds: nothing to say yet.
    Inside,
    /// The estimate combined with the bounds: `(phase, rate)`, within them.
    Moved(f64, f64),
    /// The bounds contradict each other; they were cleared.
    Inconsistent,
}

/// The most recent bounds, in the uncorrected frame.
#[derive(Clone, Debug)]
pub struct Bounds {
    bounds: VecDeque<Bound>,
    capacity: usize,
}

impl Bounds {
    /// Keep the `capacity` most recent bounds.
    pub fn new(capacity: usize) -> Self {
        Self {
            bounds: VecDeque::new(),
            capacity: capacity.max(2),
        }
    }

    /// Forget everything (after a step or a change of source).
    pub fn clear(&mut self) {
        self.bounds.clear();
    }

    /// Record an exchange at `time`: uncorrected offset `offset`, round-trip
    /// `delay` (s).
    pub fn push(&mut self, time: f64, offset: f64, delay: f64) {
        let half = 0.5 * delay.max(0.0);
        self.bounds.push_back(Bound {
            time,
            lo: offset - half,
            hi: offset + half,
        });
        if self.bounds.len() > self.capacity {
            self.bounds.pop_front();
        }
    }

    /// Combine the estimate `(phase, rate)` at `now` (uncorrected frame),
    /// of covariance `p`, with the bounds, allowing for frequency wander of
    /// spectral density `q`.
    pub fn constrain(&mut self, now: f64, phase: f64, rate: f64, p: Cov, q: f64) -> Constrained {
        if self.bounds.len() < 2 {
            return Constrained::Inside;
        }
        // Strips θ + g·s ∈ [lo, hi], s = (t − now)/SCALE, g = rate·SCALE.
        let strips: Vec<(f64, f64, f64)> = self
            .bounds
            .iter()
            .map(|b| {
                let age = (now - b.time).abs();
                let margin = WANDER_SIGMAS * (q * age.powi(3) / 3.0).sqrt();
                ((b.time - now) / SCALE, b.lo - margin, b.hi + margin)
            })
            .collect();
        let g = rate * SCALE;
        // Work relative to the estimate, so the polygon's moments do not
        // cancel; the box allows anything within a second and 1 s/s of it.
        let polygon = strips.iter().fold(
            vec![(-1.0, -1e3), (1.0, -1e3), (1.0, 1e3), (-1.0, 1e3)],
            |poly, &(s, lo, hi)| {
                let poly = clip(&poly, 1.0, s, hi - phase - g * s);
                clip(&poly, -1.0, -s, -(lo - phase - g * s))
            },
        );
        if polygon.len() < 3 {
            let last = self.bounds.pop_back();
            self.bounds.clear();
            self.bounds.extend(last);
            return Constrained::Inconsistent;
        }
        let cov = [
            [p[0][0], p[0][1] * SCALE],
            [p[0][1] * SCALE, p[1][1] * SCALE * SCALE],
        ];
        // Given its delay, an exchange's error is uniform within its bounds
        // (exactly so for exponential queueing each way), so the polygon's
        // centroid, with the spread of a uniform density over it, is a
        // second estimate from the same data that weighs them differently:
        // the two are combined by their covariances (x = P (P + V)⁻¹ c),
        // which favours the polygon when few exchanges bound it tightly.
        let mut x = (0.0, 0.0);
        if let Some((c, v)) = moments(&polygon) {
            let s = [
                [cov[0][0] + v[0][0], cov[0][1] + v[0][1]],
                [cov[1][0] + v[1][0], cov[1][1] + v[1][1]],
            ];
            let det = s[0][0] * s[1][1] - s[0][1] * s[1][0];
            if det > 0.0 && det.is_finite() {
                let y = (
                    (s[1][1] * c.0 - s[0][1] * c.1) / det,
                    (s[0][0] * c.1 - s[1][0] * c.0) / det,
                );
                x = (
                    cov[0][0] * y.0 + cov[0][1] * y.1,
                    cov[1][0] * y.0 + cov[1][1] * y.1,
                );
            }
        }
        let inside = |x: Point| {
            strips
                .iter()
                .all(|&(s, lo, hi)| (lo..=hi).contains(&(phase + x.0 + (g + x.1) * s)))
        };
        if !inside(x) {
            x = nearest(&polygon, x, cov);
        }
        Constrained::Moved(phase + x.0, (g + x.1) / SCALE)
    }
}

/// Centroid of `poly` and the covariance of a uniform density over it;
/// `None` if it has no area.
fn moments(poly: &[Point]) -> Option<(Point, Cov)> {
    // Sums over the edges of the shoelace terms; `area` is twice the area.
    let (mut area, mut cx, mut cy) = (0.0, 0.0, 0.0);
    let (mut ixx, mut iyy, mut ixy) = (0.0, 0.0, 0.0);
    for (i, &(x0, y0)) in poly.iter().enumerate() {
        let (x1, y1) = poly[(i + 1) % poly.len()];
        let cross = x0 * y1 - x1 * y0;
        area += cross;
        cx += (x0 + x1) * cross;
        cy += (y0 + y1) * cross;
        ixx += (x0 * x0 + x0 * x1 + x1 * x1) * cross;
        iyy += (y0 * y0 + y0 * y1 + y1 * y1) * cross;
        ixy += (x0 * y1 + 2.0 * x0 * y0 + 2.0 * x1 * y1 + x1 * y0) * cross;
    }
    if area.abs() < 1e-300 {
        return None;
    }
    let (cx, cy) = (cx / (3.0 * area), cy / (3.0 * area));
    let vxx = (ixx / (6.0 * area) - cx * cx).max(0.0);
    let vyy = (iyy / (6.0 * area) - cy * cy).max(0.0);
    let vxy = ixy / (12.0 * area) - cx * cy;
    Some(((cx, cy), [[vxx, vxy], [vxy, vyy]]))
}

/// Sutherland–Hodgman: the part of convex `poly` where a·x + b·y ≤ c.
fn clip(poly: &[Point], a: f64, b: f64, c: f64) -> Vec<Point> {
    let inside = |p: Point| a * p.0 + b * p.1 <= c;
    let mut out = Vec::with_capacity(poly.len() + 1);
    for (i, &cur) in poly.iter().enumerate() {
        let prev = poly[(i + poly.len() - 1) % poly.len()];
        let (fc, fp) = (a * cur.0 + b * cur.1 - c, a * prev.0 + b * prev.1 - c);
        if inside(cur) {
            if !inside(prev) {
                out.push(lerp(prev, cur, fp / (fp - fc)));
            }
            out.push(cur);
        } else if inside(prev) {
            out.push(lerp(prev, cur, fp / (fp - fc)));
        }
    }
    out
}

fn lerp(a: Point, b: Point, t: f64) -> Point {
    (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
}

/// The point of convex `poly` nearest to `x` (outside it) in the metric of
/// covariance `cov`: the nearest point of its boundary once whitened.
fn nearest(poly: &[Point], x: Point, cov: Cov) -> Point {
    // Cholesky of cov (regularised), L = [[l00, 0], [l10, l11]].
    let l00 = cov[0][0].max(1e-30).sqrt();
    let l10 = cov[1][0] / l00;
    let l11 = (cov[1][1] - l10 * l10)
        .max(1e-30 * cov[1][1].max(1e-30))
        .sqrt();
    let white = |p: Point| {
        let w0 = p.0 / l00;
        (w0, (p.1 - l10 * w0) / l11)
    };
    let color = |w: Point| (l00 * w.0, l10 * w.0 + l11 * w.1);
    let wx = white(x);
    let mut best = (f64::INFINITY, wx);
    for (i, &a) in poly.iter().enumerate() {
        let (wa, wb) = (white(a), white(poly[(i + 1) % poly.len()]));
        let d = (wb.0 - wa.0, wb.1 - wa.1);
        let len2 = d.0 * d.0 + d.1 * d.1;
        let t = if len2 > 0.0 {
            (((wx.0 - wa.0) * d.0 + (wx.1 - wa.1) * d.1) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let p = (wa.0 + t * d.0, wa.1 + t * d.1);
        let dist = (p.0 - wx.0).powi(2) + (p.1 - wx.1).powi(2);
        if dist < best.0 {
            best = (dist, p);
        }
    }
    color(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Cov = [[1e-6, 0.0], [0.0, 1e-12]];

    fn moved(c: Constrained) -> (f64, f64) {
        match c {
            Constrained::Moved(theta, rate) => (theta, rate),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_bound_says_nothing() {
        let mut b = Bounds::new(8);
        b.push(0.0, 0.0, 0.002);
        assert_eq!(b.constrain(0.0, 0.5, 0.0, P, 0.0), Constrained::Inside);
    }

    #[test]
    fn a_confident_estimate_within_the_bounds_barely_moves() {
        // Bounds ±1 ms; the estimate is known to 1 µs.
        let mut b = Bounds::new(8);
        b.push(0.0, 0.0, 0.002);
        b.push(64.0, 0.0, 0.002);
        let p = [[1e-12, 0.0], [0.0, 1e-18]];
        let (theta, rate) = moved(b.constrain(64.0, 0.0005, 0.0, p, 0.0));
        assert!((theta - 0.0005).abs() < 1e-8, "{theta}");
        assert!(rate.abs() < 1e-12, "{rate}");
    }

    #[test]
    fn a_vague_estimate_goes_to_the_centre_of_the_bounds() {
        // Upper ends fall by 1 ms each (the outbound delays shrink), lower
        // ends rise: the centre is phase 0 and rate 0 whatever the estimate.
        let mut b = Bounds::new(8);
        for (i, d) in [0.008, 0.006, 0.004].iter().enumerate() {
            b.push(i as f64 * 64.0, 0.0, *d);
        }
        let p = [[1e-2, 0.0], [0.0, 1e-8]];
        let (theta, rate) = moved(b.constrain(128.0, 0.004, 2e-6, p, 0.0));
        assert!(theta.abs() < 2e-4, "{theta}");
        assert!(rate.abs() < 2e-6, "{rate}");
    }

    #[test]
    fn an_estimate_outside_is_moved_to_the_nearest_consistent_one() {
        // Truth: phase 0, rate 0. Two tight bounds pin the phase to ±0.1 ms.
        let mut b = Bounds::new(8);
        b.push(0.0, 0.0, 0.0002);
        b.push(64.0, 0.0, 0.0002);
        let (theta, rate) = moved(b.constrain(64.0, 0.003, 0.0, P, 0.0));
        assert!(theta.abs() <= 0.0001 + 1e-12, "{theta}");
        assert!(rate.abs() < 1e-5, "{rate}");
    }

    #[test]
    fn contradicting_bounds_are_forgotten() {
        // No straight line passes within 0.1 ms of all three.
        let mut b = Bounds::new(8);
        b.push(0.0, 0.0, 0.0002);
        b.push(1.0, 0.5, 0.0002);
        b.push(2.0, 0.0, 0.0002);
        assert_eq!(
            b.constrain(1.0, 0.0, 0.0, P, 0.0),
            Constrained::Inconsistent
        );
        assert_eq!(b.constrain(1.0, 0.0, 0.0, P, 0.0), Constrained::Inside);
    }
}
