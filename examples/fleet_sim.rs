//! Fleet simulation (issue 18): N gateways × (1 + M) certificates renewing against a modelled
//! upstream CA with Let's Encrypt's published limits, with a virtual clock and an event queue
//! (a calendar of one bucket per simulated minute holding exact event times; nothing is done
//! for a certificate between its events), so a million gateways run in bounded time.
//!
//! The gatecert schedules call the scheduling functions `gatecert run` uses
//! ([`gatecert::schedule::ari_choice`], [`gatecert::schedule::decide_any`],
//! [`gatecert::schedule::next_look`], [`gatecert::schedule::backoff`]); the naïve schedule is a fixed daily cron hour that
//! renews with 1/3 of the lifetime left ("30 days" of 90), no jitter, retrying at the next
//! cron run.
//!
//! The modelled CA (Let's Encrypt, https://letsencrypt.org/docs/rate-limits/):
//! - new orders per account: 300 per 3 hours (sliding);
//! - new certificates per registered domain: 50 per 7 days (sliding);
//! - duplicate certificates (same identifier set): 5 per 7 days (sliding);
//! - a refused order is `rateLimited` with a Retry-After of when the window frees;
//! - ARI (RFC 9773): the suggested window is the 5 % of the lifetime before the point where
//!   1/3 of it is left (1/2 under 10 days), for every certificate;
//! - an outage: from `--outage-start-days` (default: where the first certificates' ARI window
//!   opens) for `--outage-days`, every request fails unanswered.
//!
//! Each gateway has its own account and registered domain unless `--gateways-per-account` /
//! `--gateways-per-domain` say otherwise; its M leaves are brokered on its account and domain.
//! The fleet is provisioned over `--provision-hours` (default 24) from t = 0.
//!
//! usage: fleet_sim [--gateways N] [--leaves M] [--lifetime-days D] [--outage-days X]
//!        [--outage-start-days S] [--horizon-days H] [--provision-hours P] [--cron-hour C]
//!        [--gateways-per-account A] [--gateways-per-domain K] [--out DIR]
//!
//! Prints one line per schedule (peak orders/minute, orders, refused by limits, expired,
//! slack before expiry) and writes DIR/orders-per-hour.csv and DIR/orders-per-hour.png.

use std::time::Instant;

use gatecert::schedule::{self, Window};

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

const MIN: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// Upper bound on processed events, whatever the parameters: the run always ends.
const MAX_EVENTS: u64 = 400_000_000;

#[derive(Clone, Debug)]
struct Params {
    gateways: u32,
    leaves: u32,
    lifetime: i64,
    outage_start: i64,
    outage_len: i64,
    horizon: i64,
    provision: i64,
    cron_hour: i64,
    per_account: u32,
    per_domain: u32,
    out: std::path::PathBuf,
}

fn parse() -> Result<Params, String> {
    let mut p = Params {
        gateways: 10_000,
        leaves: 1,
        lifetime: 90 * DAY,
        outage_start: -1,
        outage_len: 0,
        horizon: 0,
        provision: DAY,
        cron_hour: 3,
        per_account: 1,
        per_domain: 1,
        out: std::path::PathBuf::from("."),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| format!("{a} needs a value"))?
            .clone();
        let num = |what: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{what} must be a non-negative number, not {v:?}"))
        };
        match a.as_str() {
            "--gateways" => p.gateways = (num(a)? as u32).clamp(1, 1_000_000),
            "--leaves" => p.leaves = (num(a)? as u32).min(100),
            "--lifetime-days" => p.lifetime = ((num(a)? * DAY as f64) as i64).max(HOUR),
            "--outage-days" => p.outage_len = (num(a)? * DAY as f64) as i64,
            "--outage-start-days" => p.outage_start = (num(a)? * DAY as f64) as i64,
            "--horizon-days" => p.horizon = (num(a)? * DAY as f64) as i64,
            "--provision-hours" => p.provision = ((num(a)? * HOUR as f64) as i64).max(1),
            "--cron-hour" => p.cron_hour = (num(a)? as i64) % 24,
            "--gateways-per-account" => p.per_account = (num(a)? as u32).max(1),
            "--gateways-per-domain" => p.per_domain = (num(a)? as u32).max(1),
            "--out" => p.out = v.into(),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    if p.horizon == 0 {
        p.horizon = (2 * p.lifetime).max(21 * DAY);
    }
    p.horizon = p.horizon.min(400 * DAY);
    if p.outage_start < 0 {
        // From the first renewal wave (the CA's first ARI window): where an outage hurts.
        p.outage_start = ca_window(0, p.lifetime).start;
    }
    Ok(p)
}

/// The schedules compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// gatecert with the CA's ARI window.
    GatecertAri,
    /// gatecert's lifetime rule with per-device jitter (a CA without ARI).
    GatecertLifetime,
    /// Fixed cron hour, renew with 1/3 left, no jitter.
    Naive,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::GatecertAri => "gatecert-ari",
            Kind::GatecertLifetime => "gatecert-lifetime",
            Kind::Naive => "naive-cron",
        }
    }
}

/// A sliding-window counter per key (account, domain, identifier set), minutes since t = 0.
struct Windows {
    logs: Vec<Vec<u32>>,
    span: i64,
    limit: usize,
}

impl Windows {
    fn new(keys: usize, span: i64, limit: usize) -> Windows {
        Windows {
            logs: (0..keys).map(|_| Vec::new()).collect(),
            span,
            limit,
        }
    }

    /// None when `key` may have one more at `now`; else when the oldest entry leaves.
    fn check(&mut self, key: usize, now: i64) -> Option<i64> {
        let log = &mut self.logs[key];
        let floor = now - self.span;
        log.retain(|&m| i64::from(m) * MIN > floor);
        if log.len() < self.limit {
            return None;
        }
        log.iter().min().map(|&m| i64::from(m) * MIN + self.span)
    }

    fn record(&mut self, key: usize, now: i64) {
        self.logs[key].push((now / MIN) as u32);
    }
}

/// The event queue: one bucket per simulated minute up to the horizon, each holding exact
/// (time, certificate) events; events after the horizon are dropped. Push and pop are O(1);
/// popping walks the buckets in time order.
struct Calendar {
    buckets: Vec<Vec<(i64, u32)>>,
    current: usize,
}

impl Calendar {
    fn new(horizon: i64) -> Calendar {
        Calendar {
            buckets: (0..=horizon / MIN).map(|_| Vec::new()).collect(),
            current: 0,
        }
    }

    fn push(&mut self, t: i64, i: u32) {
        let b = (t.max(0) / MIN) as usize;
        if let Some(bucket) = self.buckets.get_mut(b.max(self.current)) {
            bucket.push((t, i));
        }
    }

    fn pop(&mut self) -> Option<(i64, u32)> {
        while self.current < self.buckets.len() {
            if let Some(e) = self.buckets[self.current].pop() {
                return Some(e);
            }
            self.buckets[self.current] = Vec::new();
            self.current += 1;
        }
        None
    }
}

#[derive(Default, Clone, Copy)]
struct Cert {
    not_before: i64,
    not_after: i64,
    failures: u32,
    serial: u32,
}

#[derive(Default)]
struct Report {
    orders: u64,
    issued: u64,
    refused: u64,
    unreachable: u64,
    expired: u64,
    min_slack: i64,
    slack_hours: Vec<u64>,
    per_minute: Vec<u32>,
    events: u64,
}

impl Report {
    fn slack_percentile(&self, q: f64) -> i64 {
        let total: u64 = self.slack_hours.iter().sum();
        let want = (total as f64 * q).ceil() as u64;
        let mut acc = 0;
        for (h, n) in self.slack_hours.iter().enumerate() {
            acc += n;
            if acc >= want.max(1) {
                return h as i64;
            }
        }
        0
    }
}

/// A tiny deterministic PRNG for provisioning times (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The CA's ARI window for a certificate (see the module doc).
fn ca_window(not_before: i64, not_after: i64) -> Window {
    let lifetime = not_after - not_before;
    let left = if lifetime < 10 * DAY {
        lifetime / 2
    } else {
        lifetime / 3
    };
    Window {
        start: not_after - left - lifetime / 20,
        end: not_after - left,
    }
}

fn next_cron(t: i64, hour: i64) -> i64 {
    let day = t.div_euclid(DAY) * DAY + hour * HOUR;
    if day >= t {
        day
    } else {
        day + DAY
    }
}

/// When `kind` next attempts certificate `i`, issued as `c`, looking at `now`. The gatecert
/// schedules take the decision `renew::decide` takes ([`schedule::decide_any`]: the ARI pick,
/// or the lifetime rule with the device's jitter) and look again when the upstream worker
/// would ([`schedule::next_look`]).
fn plan(kind: Kind, p: &Params, i: usize, c: &Cert, now: i64) -> i64 {
    // Device + certificate identity, as renew::decide's "host/name/serial" seed.
    let mut seed = [0u8; 12];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed[8..].copy_from_slice(&c.serial.to_le_bytes());
    match kind {
        Kind::GatecertAri | Kind::GatecertLifetime => {
            let choice = match kind {
                Kind::GatecertAri => {
                    schedule::ari_choice(None, ca_window(c.not_before, c.not_after)).ok()
                }
                _ => None,
            };
            let d = schedule::decide_any(c.not_before, c.not_after, now, &seed, choice.as_ref());
            schedule::next_look(&d, now)
        }
        Kind::Naive => {
            let lifetime = c.not_after - c.not_before;
            next_cron((c.not_after - lifetime / 3).max(now + 1), p.cron_hour)
        }
    }
}

fn simulate(kind: Kind, p: &Params) -> Report {
    let per_gw = 1 + p.leaves as usize;
    let n = p.gateways as usize * per_gw;
    let accounts = (p.gateways as usize).div_ceil(p.per_account as usize);
    let domains = (p.gateways as usize).div_ceil(p.per_domain as usize);
    let mut acct = Windows::new(accounts, 3 * HOUR, 300);
    let mut dom = Windows::new(domains, WEEK, 50);
    let mut dup = Windows::new(n, WEEK, 5);
    let mut rng = Rng(0x5EED);
    let mut certs = vec![Cert::default(); n];
    let mut queue = Calendar::new(p.horizon);
    let mut r = Report {
        min_slack: i64::MAX,
        slack_hours: vec![0; (p.lifetime / HOUR + 2) as usize],
        per_minute: vec![0; (p.horizon / MIN + 1) as usize],
        ..Report::default()
    };
    for g in 0..p.gateways as usize {
        let t0 = (rng.next() % p.provision as u64) as i64;
        for k in 0..per_gw {
            let i = g * per_gw + k;
            let nb = t0 + k as i64 * MIN;
            certs[i] = Cert {
                not_before: nb,
                not_after: nb + p.lifetime,
                failures: 0,
                serial: 0,
            };
            queue.push(plan(kind, p, i, &certs[i], nb), i as u32);
        }
    }
    let outage = p.outage_start..p.outage_start + p.outage_len;
    while let Some((t, i)) = queue.pop() {
        if r.events >= MAX_EVENTS {
            break;
        }
        r.events += 1;
        let i = i as usize;
        let g = i / per_gw;
        let c = certs[i];
        let retry = |failures: u32, retry_after: Option<i64>| match kind {
            Kind::Naive => next_cron(t + 1, p.cron_hour),
            _ => schedule::backoff(failures, t, Some(c.not_after), retry_after).max(t + 60),
        };
        if outage.contains(&t) {
            r.unreachable += 1;
            certs[i].failures += 1;
            queue.push(retry(certs[i].failures, None), i as u32);
            continue;
        }
        r.orders += 1;
        r.per_minute[(t / MIN) as usize] += 1;
        let (a, d) = (g / p.per_account as usize, g / p.per_domain as usize);
        // A refused request creates no order and no certificate, so it counts against nothing.
        let refused = acct
            .check(a, t)
            .or_else(|| dom.check(d, t))
            .or_else(|| dup.check(i, t));
        if let Some(free) = refused {
            r.refused += 1;
            certs[i].failures += 1;
            // `rateLimited` with a Retry-After of when the window frees: the upstream worker
            // passes it to schedule::backoff, as here.
            queue.push(retry(certs[i].failures, Some(free - t)), i as u32);
            continue;
        }
        acct.record(a, t);
        dom.record(d, t);
        dup.record(i, t);
        r.issued += 1;
        let slack = c.not_after - t;
        if slack < 0 {
            r.expired += 1;
        } else {
            r.min_slack = r.min_slack.min(slack);
            let h = ((slack / HOUR) as usize).min(r.slack_hours.len() - 1);
            r.slack_hours[h] += 1;
        }
        certs[i] = Cert {
            not_before: t,
            not_after: t + p.lifetime,
            failures: 0,
            serial: c.serial + 1,
        };
        queue.push(plan(kind, p, i, &certs[i], t), i as u32);
    }
    // Still unrenewed past notAfter at the end: expired too.
    r.expired += certs.iter().filter(|c| c.not_after < p.horizon).count() as u64;
    r
}

fn main() {
    let p = match parse() {
        Ok(p) => p,
        Err(m) => {
            eprintln!("fleet_sim: {m}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&p.out) {
        eprintln!("fleet_sim: cannot create {}: {e}", p.out.display());
        std::process::exit(2);
    }
    say!(
        "gateways {} × {} certificates, lifetime {} d, outage {} d from day {:.1}, horizon {} d",
        p.gateways,
        1 + p.leaves,
        p.lifetime as f64 / DAY as f64,
        p.outage_len as f64 / DAY as f64,
        p.outage_start as f64 / DAY as f64,
        p.horizon / DAY
    );
    let kinds = [Kind::GatecertAri, Kind::GatecertLifetime, Kind::Naive];
    let mut hourly: Vec<Vec<u64>> = Vec::new();
    for kind in kinds {
        let started = Instant::now();
        let r = simulate(kind, &p);
        let peak = r.per_minute.iter().max().copied().unwrap_or(0);
        let min_slack = if r.min_slack == i64::MAX {
            "-".to_owned()
        } else {
            format!("{:.1} h", r.min_slack as f64 / HOUR as f64)
        };
        say!(
            "{:<18} peak/min {:>8}  orders {:>9}  issued {:>9}  refused-by-limits {:>7}  \
             unreachable {:>8}  expired {:>7}  slack min {} p1 {} h median {} h  ({} events, {:.1} s)",
            kind.name(),
            peak,
            r.orders,
            r.issued,
            r.refused,
            r.unreachable,
            r.expired,
            min_slack,
            r.slack_percentile(0.01),
            r.slack_percentile(0.5),
            r.events,
            started.elapsed().as_secs_f64()
        );
        hourly.push(
            r.per_minute
                .chunks(60)
                .map(|h| h.iter().map(|&x| u64::from(x)).sum())
                .collect(),
        );
    }
    let csv = p.out.join("orders-per-hour.csv");
    let mut text = String::from("hour");
    for k in kinds {
        text.push(',');
        text.push_str(k.name());
    }
    text.push('\n');
    for h in 0..hourly[0].len() {
        text.push_str(&h.to_string());
        for s in &hourly {
            text.push_str(&format!(",{}", s[h]));
        }
        text.push('\n');
    }
    let png = p.out.join("orders-per-hour.png");
    let result = std::fs::write(&csv, text)
        .map_err(|e| format!("{}: {e}", csv.display()))
        .and_then(|()| {
            std::fs::write(&png, plot(&hourly)).map_err(|e| format!("{}: {e}", png.display()))
        });
    match result {
        Ok(()) => say!("wrote {} and {}", csv.display(), png.display()),
        Err(e) => {
            eprintln!("fleet_sim: cannot write {e}");
            std::process::exit(2);
        }
    }
}

/// Orders per hour, one colour per schedule (blue gatecert with ARI, green gatecert's
/// lifetime rule, red naïve cron), log10 y axis with a grey line per decade, as a PNG.
fn plot(series: &[Vec<u64>]) -> Vec<u8> {
    const W: usize = 1000;
    const H: usize = 320;
    const COLOURS: [[u8; 3]; 3] = [[0, 110, 200], [0, 160, 60], [210, 40, 30]];
    let mut px = vec![[255u8; 3]; W * H];
    let max = series.iter().flatten().copied().max().unwrap_or(1).max(1);
    let top = (max as f64).log10().ceil().max(1.0);
    let y_of = |v: u64| -> usize {
        let f = ((v as f64) + 1.0).log10() / (top + 0.05);
        (H - 1) - ((f * (H - 10) as f64) as usize).min(H - 1)
    };
    // Decade grid lines.
    for d in 0..=top as u32 {
        let y = y_of(10u64.pow(d).saturating_sub(1));
        for x in 0..W {
            px[y * W + x] = [220, 220, 220];
        }
    }
    let len = series.first().map_or(1, Vec::len).max(1);
    // Polylines (zero drawn on the baseline), so no series hides another.
    for (s, colour) in series.iter().zip(COLOURS) {
        let mut prev: Option<usize> = None;
        for x in 0..W {
            let (a, b) = (x * len / W, ((x + 1) * len / W).max(x * len / W + 1));
            let v = s[a..b.min(len)].iter().copied().max().unwrap_or(0);
            let y = y_of(v);
            let (lo, hi) = match prev {
                Some(py) => (py.min(y), py.max(y)),
                None => (y, y),
            };
            for yy in lo..=hi {
                px[yy * W + x] = colour;
                if yy > 0 {
                    px[(yy - 1) * W + x] = colour;
                }
            }
            prev = Some(y);
        }
    }
    png(W, H, &px)
}

/// A minimal PNG encoder: RGB, 8 bit, zlib with stored (uncompressed) deflate blocks.
fn png(w: usize, h: usize, px: &[[u8; 3]]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(h * (1 + 3 * w));
    for row in px.chunks(w) {
        raw.push(0);
        for p in row {
            raw.extend_from_slice(p);
        }
    }
    let mut z = vec![0x78, 0x01];
    let mut chunks = raw.chunks(65_535).peekable();
    while let Some(c) = chunks.next() {
        z.push(u8::from(chunks.peek().is_none()));
        z.extend_from_slice(&(c.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        z.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_in = kind.to_vec();
        crc_in.extend_from_slice(&data);
        out.extend_from_slice(&crc_in);
        out.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
