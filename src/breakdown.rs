//! Per-template and per-reason breakdowns as plain data: which templates of
//! an account get series of their own (the budget), what those series are
//! named, and which reason a failed job's `stats.error` falls under. No
//! metrics, sockets or clocks: the metrics module holds one
//! [`TemplateSlots`] per account and asks it, with the time.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::TemplateName;
use crate::clock::UnixMillis;

/// The `template` and `template_id` of everything past the budget.
pub const OTHER: &str = "other";
/// The `template` and `template_id` of jobs without a template (or whose
/// template the exporter never read).
pub const NO_TEMPLATE: &str = "none";
/// The `reason` of a failed job whose `stats.error` the exporter did not
/// read (none given, or the job's full body never read).
pub const UNREAD: &str = "unknown";
/// Display names longer than this are cut (labels stay readable).
pub const MAX_NAME_CHARS: usize = 100;
/// Ids longer than this are not given series of their own.
pub const MAX_ID_BYTES: usize = 128;
/// Display names kept per account from the template list (those of the
/// templates with series first, then in the list's order): a template that
/// takes series later is named from the start. About 100 bytes each, so at
/// most about a megabyte per account however long the list.
pub const NAMES_KEPT: usize = 10_000;

/// The labels that name one template's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateSeries {
    /// Its display name; its id until the name is known.
    pub template: String,
    pub template_id: String,
}

impl TemplateSeries {
    fn fixed(value: &str) -> Self {
        TemplateSeries {
            template: value.to_owned(),
            template_id: value.to_owned(),
        }
    }
}

/// Where one observation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub series: TemplateSeries,
    /// The series are new (a template just took a slot, or `other` or
    /// `none` is used the first time): create them all before counting.
    pub new: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    last_seen: UnixMillis,
    taken_at: UnixMillis,
}

/// The templates of one account that have series of their own: at most
/// `max`, given first come first served, each kept while it has a
/// completion or a queue wait within `expire_after`, then freed (its series
/// removed) for the next template to come. A template never moves between
/// its own series and `other` while it holds its slot, so nothing flaps;
/// the others are summed under `other`. Memory is the slots alone: a
/// template without one is not remembered at all, whatever their number.
#[derive(Debug, Clone)]
pub struct TemplateSlots {
    max: usize,
    expire_after_ms: i64,
    slots: HashMap<Box<str>, Slot>,
    /// Display names by template id, from the last template list read.
    names: HashMap<Box<str>, Box<str>>,
    other_used: bool,
    none_used: bool,
}

impl TemplateSlots {
    pub fn new(max: usize, expire_after: Duration) -> Self {
        TemplateSlots {
            max,
            expire_after_ms: i64::try_from(expire_after.as_millis()).unwrap_or(i64::MAX),
            slots: HashMap::with_capacity(max.min(1024)),
            names: HashMap::new(),
            other_used: false,
            none_used: false,
        }
    }

    /// Templates holding a slot now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether a template that took its slot after `since` has no display
    /// name yet: a list read before it came may not have held it, so
    /// reading the list again may name it (one that was in a later list
    /// and had no name there is not asked for again).
    pub fn unnamed_since(&self, since: UnixMillis) -> bool {
        self.slots
            .iter()
            .any(|(id, slot)| slot.taken_at > since && !self.names.contains_key(id))
    }

    /// The display name of template `id`, from the last list read.
    pub fn name_of(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(|n| &**n)
    }

    fn series(&self, id: &str) -> TemplateSeries {
        TemplateSeries {
            template: self.names.get(id).map_or(id, |n| n).to_owned(),
            template_id: id.to_owned(),
        }
    }

    /// Where an observation of a job of `template` at `now` is counted:
    /// the template's own series if it holds a slot or one is free, else
    /// `other`; `none` for a job without a template.
    pub fn place(&mut self, template: Option<&str>, now: UnixMillis) -> Placement {
        let Some(id) = template else {
            let new = !std::mem::replace(&mut self.none_used, true);
            return Placement {
                series: TemplateSeries::fixed(NO_TEMPLATE),
                new,
            };
        };
        if let Some(slot) = self.slots.get_mut(id) {
            slot.last_seen = slot.last_seen.max(now);
            return Placement {
                series: self.series(id),
                new: false,
            };
        }
        // An id that reads like one of the fixed values, or is too long
        // for a label, never gets series of its own.
        let ownable = id != OTHER && id != NO_TEMPLATE && id.len() <= MAX_ID_BYTES;
        if ownable && self.slots.len() < self.max {
            let slot = Slot {
                last_seen: now,
                taken_at: now,
            };
            self.slots.insert(id.into(), slot);
            let series = self.series(id);
            return Placement { series, new: true };
        }
        let new = !std::mem::replace(&mut self.other_used, true);
        Placement {
            series: TemplateSeries::fixed(OTHER),
            new,
        }
    }

    /// Frees the slots of templates with nothing observed for longer than
    /// `expire_after` before `now`; returns their series, to be removed.
    pub fn expire(&mut self, now: UnixMillis) -> Vec<TemplateSeries> {
        let horizon = now.saturating_sub(self.expire_after_ms);
        let expired: Vec<Box<str>> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.last_seen < horizon)
            .map(|(id, _)| id.clone())
            .collect();
        let mut gone: Vec<TemplateSeries> = expired.iter().map(|id| self.series(id)).collect();
        for id in &expired {
            self.slots.remove(id);
        }
        gone.sort();
        gone
    }

    /// Takes the names of the API's template list (see [`NAMES_KEPT`]).
    /// Returns the series of templates with series whose name changed,
    /// under their old name: they are removed, and the template's numbers
    /// go on under the new name. A template with series that is missing
    /// from the list keeps its name.
    pub fn set_names(&mut self, listed: &[TemplateName]) -> Vec<TemplateSeries> {
        let before: Vec<TemplateSeries> = self.slots.keys().map(|id| self.series(id)).collect();
        let mut names: HashMap<Box<str>, Box<str>> = HashMap::new();
        for (id, name) in &self.names {
            if self.slots.contains_key(id) {
                names.insert(id.clone(), name.clone());
            }
        }
        let holders = listed
            .iter()
            .filter(|t| self.slots.contains_key(t.id.as_str()));
        let rest = listed
            .iter()
            .filter(|t| !self.slots.contains_key(t.id.as_str()));
        for t in holders.chain(rest) {
            let Some(name) = t.name.as_deref().map(display_name) else {
                names.remove(t.id.as_str());
                continue;
            };
            if names.len() >= NAMES_KEPT && !names.contains_key(t.id.as_str()) {
                continue;
            }
            names.insert(t.id.as_str().into(), name.into());
        }
        self.names = names;
        let mut renamed: Vec<TemplateSeries> = before
            .into_iter()
            .filter(|was| self.series(&was.template_id) != *was)
            .collect();
        renamed.sort();
        renamed
    }
}

/// A display name as a label value: trimmed, at most [`MAX_NAME_CHARS`].
pub fn display_name(name: &str) -> String {
    name.trim().chars().take(MAX_NAME_CHARS).collect()
}

/// One value of the `reason` label and the pattern (a Rust regex) of the
/// `stats.error` texts it stands for (`metrics.error_reasons`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReason {
    pub reason: String,
    pub pattern: String,
}

/// Sorts `stats.error` texts into the configured reasons: the first
/// pattern that matches names it, none matching is `other`, no text is
/// [`UNREAD`]. The label's values are the configured reasons and those two.
#[derive(Debug, Clone)]
pub struct ErrorReasons {
    patterns: regex::RegexSet,
    reasons: Vec<String>,
}

impl ErrorReasons {
    /// `None` when no reason is configured (the breakdown is off).
    pub fn new(configured: &[ErrorReason]) -> Result<Option<Self>, regex::Error> {
        if configured.is_empty() {
            return Ok(None);
        }
        let patterns = regex::RegexSet::new(configured.iter().map(|r| r.pattern.as_str()))?;
        Ok(Some(ErrorReasons {
            patterns,
            reasons: configured.iter().map(|r| r.reason.clone()).collect(),
        }))
    }

    pub fn classify(&self, error: Option<&str>) -> &str {
        let Some(text) = error else {
            return UNREAD;
        };
        match self.patterns.matches(text).iter().next() {
            Some(i) => &self.reasons[i],
            None => OTHER,
        }
    }

    /// Every value the `reason` label can take.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::HashSet::new();
        self.reasons
            .iter()
            .map(String::as_str)
            .chain([OTHER, UNREAD])
            .filter(move |r| seen.insert(*r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn slots(max: usize) -> TemplateSlots {
        TemplateSlots::new(max, Duration::from_secs(24 * 3600))
    }

    fn id_of(p: &Placement) -> &str {
        &p.series.template_id
    }

    #[test]
    fn the_first_templates_take_the_slots_and_the_rest_are_other() {
        let mut s = slots(2);
        let a = s.place(Some("A"), 0);
        assert_eq!((id_of(&a), a.new), ("A", true));
        assert_eq!(a.series.template, "A", "named by its id until named");
        let b = s.place(Some("B"), 1);
        assert_eq!((id_of(&b), b.new), ("B", true));
        let c = s.place(Some("C"), 2);
        assert_eq!((id_of(&c), c.new), (OTHER, true));
        assert!(!s.place(Some("D"), 3).new, "other exists already");
        let a = s.place(Some("A"), 4);
        assert_eq!((id_of(&a), a.new), ("A", false));
        let none = s.place(None, 5);
        assert_eq!(
            (id_of(&none), none.series.template.as_str()),
            (NO_TEMPLATE, NO_TEMPLATE)
        );
    }

    #[test]
    fn a_template_keeps_its_slot_whatever_the_others_do() {
        let mut s = slots(1);
        s.place(Some("quiet"), 0);
        // A busier template comes: it does not push the first one out.
        for t in 1..1000 {
            assert_eq!(id_of(&s.place(Some("busy"), t)), OTHER);
        }
        assert_eq!(id_of(&s.place(Some("quiet"), 2000)), "quiet");
    }

    #[test]
    fn a_slot_is_freed_after_expire_after_without_a_job_and_goes_to_the_next() {
        let mut s = slots(1);
        s.place(Some("old"), 0);
        assert!(s.expire(24 * HOUR).is_empty(), "seen exactly 24h ago: kept");
        assert_eq!(id_of(&s.place(Some("new"), 24 * HOUR)), OTHER);
        let gone = s.expire(24 * HOUR + 1);
        assert_eq!(gone, [TemplateSeries::fixed("old")]);
        assert_eq!(id_of(&s.place(Some("new"), 24 * HOUR + 2)), "new");
    }

    #[test]
    fn ten_thousand_templates_keep_max_slots_and_remember_nothing_else() {
        let mut s = slots(10);
        let mut own = std::collections::HashSet::new();
        for round in 0..3 {
            for t in 0..10_000 {
                let p = s.place(Some(&format!("T{t:05}")), round * 1000 + t);
                own.insert(p.series.template_id);
            }
        }
        assert_eq!(s.len(), 10);
        // The first ten, and `other`: 11 series sets, every round the same.
        assert_eq!(own.len(), 11);
        assert!(own.contains("T00000") && own.contains("T00009") && own.contains(OTHER));
        assert!(s.slots.capacity() < 64, "no room kept for the others");
    }

    #[test]
    fn names_are_kept_for_templates_to_come_and_a_rename_says_the_old_series() {
        let mut s = slots(2);
        s.place(Some("A"), 0);
        assert!(s.unnamed_since(-1));
        assert!(!s.unnamed_since(0), "taken before the last read");
        let list = |a: Option<&str>| {
            vec![
                TemplateName {
                    id: "A".into(),
                    name: a.map(Into::into),
                },
                TemplateName {
                    id: "Z".into(),
                    name: Some("not placed".into()),
                },
            ]
        };
        let renamed = s.set_names(&list(Some("Promo")));
        assert_eq!(renamed, [TemplateSeries::fixed("A")], "was named by its id");
        assert!(!s.unnamed_since(-1));
        assert_eq!(s.place(Some("A"), 1).series.template, "Promo");
        assert!(s.set_names(&list(Some("Promo"))).is_empty(), "same name");
        assert!(s.set_names(&[]).is_empty(), "missing from the list: kept");
        let renamed = s.set_names(&list(Some("Promo v2")));
        assert_eq!(
            renamed,
            [TemplateSeries {
                template: "Promo".into(),
                template_id: "A".into()
            }]
        );
        assert_eq!(
            s.place(Some("Z"), 2).series.template,
            "not placed",
            "named from the list read before it came"
        );
        assert!(!s.unnamed_since(-1));
    }

    #[test]
    fn a_template_list_longer_than_names_kept_keeps_the_slot_holders_names_first() {
        let mut s = slots(2);
        s.place(Some("T19999"), 0);
        let listed: Vec<TemplateName> = (0..20_000)
            .map(|t| TemplateName {
                id: format!("T{t:05}"),
                name: Some(format!("Name {t}")),
            })
            .collect();
        s.set_names(&listed);
        assert_eq!(s.names.len(), NAMES_KEPT);
        assert_eq!(s.place(Some("T19999"), 1).series.template, "Name 19999");
        assert_eq!(s.place(Some("T00000"), 1).series.template, "Name 0");
        assert_eq!(s.place(Some("T15000"), 1).series.template_id, OTHER);
    }

    #[test]
    fn ids_like_the_fixed_values_or_too_long_are_other() {
        let mut s = slots(5);
        assert_eq!(id_of(&s.place(Some(OTHER), 0)), OTHER);
        assert_eq!(id_of(&s.place(Some(NO_TEMPLATE), 0)), OTHER);
        assert_eq!(id_of(&s.place(Some(&"x".repeat(200)), 0)), OTHER);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_long_display_name_is_cut_on_a_character_boundary() {
        let name = "é".repeat(150);
        assert_eq!(display_name(&name).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn the_first_matching_pattern_names_the_reason() {
        let cfg = [
            ErrorReason {
                reason: "missing_font".into(),
                pattern: "(?i)missing font".into(),
            },
            ErrorReason {
                reason: "asset_download".into(),
                pattern: "(?i)download failed|HTTP 404".into(),
            },
            ErrorReason {
                reason: "font_or_404".into(),
                pattern: "(?i)font|404".into(),
            },
        ];
        let r = ErrorReasons::new(&cfg).unwrap().unwrap();
        assert_eq!(
            r.classify(Some("Missing font: Montserrat-Bold")),
            "missing_font"
        );
        assert_eq!(
            r.classify(Some("Asset download failed: HTTP 404 for a.mp4")),
            "asset_download"
        );
        assert_eq!(r.classify(Some("After Effects crashed")), OTHER);
        assert_eq!(r.classify(None), UNREAD);
        let labels: Vec<&str> = r.labels().collect();
        assert_eq!(
            labels,
            [
                "missing_font",
                "asset_download",
                "font_or_404",
                OTHER,
                UNREAD
            ]
        );
        assert!(ErrorReasons::new(&[]).unwrap().is_none());
    }
}
