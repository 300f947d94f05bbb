//! `GET /templates` as the exporter uses it: each template's id and
//! display name, read leniently (an entry without a usable id is skipped,
//! one without a usable name keeps its id as its name).

use serde::Deserialize;

use super::job::DecodeError;

/// A template's id and the name people know it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateName {
    pub id: String,
    /// `displayName`; `None` when the API gave none (or an empty one).
    pub name: Option<String>,
}

/// Decodes a `GET /templates` body: a JSON array of templates.
pub fn parse_templates(body: &[u8]) -> Result<Vec<TemplateName>, DecodeError> {
    // Each entry is read on its own, so one odd entry (a number for a
    // name, say) loses that entry's field and not the whole list.
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        id: serde_json::Value,
        #[serde(default, rename = "displayName")]
        display_name: serde_json::Value,
    }
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| DecodeError::new(format!("template list: {e}")))?;
    Ok(entries
        .into_iter()
        .filter_map(|entry| serde_json::from_value::<Raw>(entry).ok())
        .filter_map(|raw| {
            let id = raw.id.as_str().filter(|id| !id.is_empty())?.to_owned();
            let name = raw
                .display_name
                .as_str()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            Some(TemplateName { id, name })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_display_names_are_read_and_odd_entries_lose_only_their_field() {
        let body = br#"[
            {"id":"01J0000000000000000000000A","type":"aep","displayName":"Promo 30s","layers":["a"]},
            {"id":"01J0000000000000000000000B","displayName":null},
            {"id":"01J0000000000000000000000C","displayName":7},
            {"displayName":"no id"},
            {"id":"","displayName":"empty id"},
            {"id":5},
            "not an object",
            {"id":"01J0000000000000000000000D","displayName":"  "}
        ]"#;
        let got = parse_templates(body).unwrap();
        let want = [
            ("01J0000000000000000000000A", Some("Promo 30s")),
            ("01J0000000000000000000000B", None),
            ("01J0000000000000000000000C", None),
            ("01J0000000000000000000000D", None),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, (id, name)) in got.iter().zip(want) {
            assert_eq!(g.id, id);
            assert_eq!(g.name.as_deref(), name);
        }
    }

    #[test]
    fn a_body_that_is_not_a_list_is_an_error() {
        assert!(parse_templates(br#"{"error":"nope"}"#).is_err());
        assert!(parse_templates(b"").is_err());
    }
}
