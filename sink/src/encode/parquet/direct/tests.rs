use super::*;
use std::sync::Arc;

use crate::encode::parquet::{decode_all, ParquetPlan};
use crate::route::json::FieldSet;
use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use arrow_schema::{Field, Schema};
use parquet::file::properties::WriterProperties;

fn schema() -> SchemaRef {
    let item = Field::new("item", DataType::Utf8, true);
    let inner = Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("level", DataType::Int32, true),
        Field::new("must", DataType::Boolean, false),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "local",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("s", DataType::Utf8, true),
        Field::new("req", DataType::Utf8, false),
        Field::new("ok", DataType::Boolean, true),
        Field::new("x", DataType::Float64, true),
        Field::new("tags", DataType::List(Arc::new(item)), true),
        Field::new("user", DataType::Struct(inner), true),
    ]))
}

fn plan(schema: SchemaRef, strict: bool) -> ParquetPlan {
    ParquetPlan::new(schema, "test".into(), WriterProperties::new(), strict)
}

/// The old path: arrow-json with Lakesink's Utf8 decoder, one record.
fn old(plan: &ParquetPlan, record: &str) -> Result<RecordBatch, ArrowError> {
    let mut d = plan.decoder()?;
    let mut out = Vec::new();
    decode_all(&mut d, format!("{record}\n").as_bytes(), &mut out)?;
    assert_eq!(out.len(), 1);
    Ok(out.remove(0))
}

fn paths() -> (FieldSet, Vec<Vec<String>>) {
    let mut f = FieldSet::default();
    f.add(&["t".to_string()]).unwrap();
    f.add(&["user".to_string(), "name".to_string()]).unwrap();
    let p = f.paths().to_vec();
    (f, p)
}

const TAKEN: &[&str] = &[
    r#"{"id":1,"t":"2024-01-02T01:02:03.456Z","req":"plain","user":{"name":"a","must":true}}"#,
    r#"{"id":-2,"t":1704157323456,"local":"2024-01-02 01:02:03.5","s":"esc \" \\ \/ \u00e9 \n \b","req":{"k":"v\"q", "n" : [1, 2.50, -0, 1e3, null, true],"u":"\u0001\u00e9\t"},"ok":false,"x":1.5e-3,"tags":["a",null,"\u00e9"],"user":null}"#,
    r#"{"id":3,"t":"2024-01-02T03:02:03+02:00","req":[1,{"a":[]}],"x":5,"tags":[],"user":{"level":7,"must":false,"name":null}}"#,
    r#"{"user":{"must":true},"req":12.0,"t":"2024-01-02T01:02:03Z","id":9223372036854775807,"s":null,"tags":null,"x":null,"ok":null,"local":null}"#,
    r#"{"id":4,"t":"2024-01-02T01:02:03Z","req":"x","extra":{"deep":[1,2]},"user":{"must":true,"other":1}}"#,
    r#" { "id" : 5 , "t" : "2024-01-02T01:02:03Z" , "req" : " spaced " } "#,
];

const MISSED: &[&str] = &[
    r#"{"id":"6","t":"2024-01-02T01:02:03Z","req":"x"}"#, // a string into an integer
    r#"{"id":6.5,"t":"2024-01-02T01:02:03Z","req":"x"}"#, // a fraction into an integer
    r#"{"id":6,"t":"2024-01-02T01:02:03Z"}"#,             // a required field missing
    r#"{"id":6,"t":"2024-01-02T01:02:03Z","req":null}"#,  // null where none may go
    r#"{"id":6,"id":7,"t":"2024-01-02T01:02:03Z","req":"x"}"#, // a duplicate key
    r#"{"id":6,"t":"yesterday","req":"x"}"#,              // not a time
    r#"{"id":6,"t":"2024-01-02T01:02:03Z","req":"x","ok":"yes"}"#,
    r#"{"id":6,"t":"2024-01-02T01:02:03Z","req":"x","user":{"name":"a"}}"#, // must missing
    r#"{"id":6,"t":"2024-01-02T01:02:03Z","req":"x","tags":"a"}"#,
    r#"{"id":6,"t":"2024-01-02T01:02:03Z","req":"x","id2":1,}"#, // invalid JSON
    r#"{"id":6,"t":"2024-01-02T01:02:03Z","req":"x"} {}"#,
    r#"[1]"#,
    r#"{"id":2147483648123456789012,"t":"2024-01-02T01:02:03Z","req":"x"}"#,
];

#[test]
fn what_the_direct_path_takes_it_makes_into_the_rows_arrow_json_makes() {
    let schema = schema();
    let plan = plan(schema.clone(), false);
    let direct = JsonDirect::new(schema, false).expect("covered");
    let (fields, paths) = paths();
    let mut rows = direct.rows();
    for (i, record) in TAKEN.iter().enumerate() {
        let found = direct
            .parse(record, &paths, &mut rows)
            .unwrap_or_else(|_| panic!("record {i} missed: {record}"));
        let want = fields.extract(record).unwrap();
        assert_eq!(
            found.map(|f| f.map(|r| r.get().to_string())),
            want.map(|f| f.map(|r| r.get().to_string())),
            "record {i}"
        );
        let one = {
            let mut r = direct.rows();
            r.push_row(&rows, rows.len() - 1);
            r.finish(&direct, false).unwrap()
        };
        assert_eq!(one, old(&plan, record).unwrap(), "record {i}: {record}");
    }
    // All the rows at once, as a file holds them; then again into the emptied builders, with
    // room kept for them and without.
    let mut d = plan.decoder().unwrap();
    let mut want = Vec::new();
    decode_all(&mut d, (TAKEN.join("\n") + "\n").as_bytes(), &mut want).unwrap();
    for again in [true, false, true] {
        let got = rows.finish(&direct, again).unwrap();
        assert_eq!(got, want[0], "again: {again}");
        assert!(rows.is_empty());
        if !again {
            assert!(rows.memory() < 64, "{} bytes held", rows.memory());
        }
        for record in TAKEN {
            direct.parse(record, &paths, &mut rows).unwrap();
        }
    }
}

#[test]
fn what_the_direct_path_misses_leaves_the_rows_as_they_were_and_takes_the_old_way() {
    let schema = schema();
    let plan = plan(schema.clone(), false);
    let direct = JsonDirect::new(schema, false).unwrap();
    let (_, paths) = paths();
    let mut rows = direct.rows();
    direct.parse(TAKEN[1], &paths, &mut rows).unwrap();
    for record in MISSED {
        assert!(direct.parse(record, &paths, &mut rows).is_err(), "{record}");
        assert_eq!(rows.len(), 1);
    }
    direct.parse(TAKEN[2], &paths, &mut rows).unwrap();
    let got = rows.finish(&direct, false).unwrap();
    let mut d = plan.decoder().unwrap();
    let mut want = Vec::new();
    let text = format!("{}\n{}\n", TAKEN[1], TAKEN[2]);
    decode_all(&mut d, text.as_bytes(), &mut want).unwrap();
    assert_eq!(got, want[0], "a missed record left a trace in the rows");
}

#[test]
fn unknown_fields_are_missed_when_they_make_the_record_bad() {
    let schema = schema();
    let direct = JsonDirect::new(schema.clone(), true).unwrap();
    let mut rows = direct.rows();
    assert!(direct.parse(TAKEN[4], &[], &mut rows).is_err());
    assert!(old(&plan(schema, true), TAKEN[4]).is_err());
    direct.parse(TAKEN[0], &[], &mut rows).unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn cloudtrail_events_give_the_rows_arrow_json_gives() {
    let shipped = lakesink_schema_registry::source::resolve_file("cloudtrail.avsc", &[]).unwrap();
    let plan = plan(Arc::new(shipped.schema), false);
    let direct = JsonDirect::new(plan.schema.clone(), plan.strict).expect("CloudTrail is covered");
    let cfg = crate::generator::GenConfig::default();
    let mut text = String::new();
    let mut all = String::new();
    let mut rows = direct.rows();
    let mut file = direct.rows();
    let (mut fields, mut paths) = (FieldSet::default(), Vec::new());
    fields.add(&["eventTime".to_string()]).unwrap();
    fields
        .add(&["userIdentity".to_string(), "accountId".to_string()])
        .unwrap();
    paths.extend(fields.paths().iter().cloned());
    for seq in 0..3000 {
        crate::generator::event(&cfg, seq, 3000, &mut text);
        let found = direct.parse(&text, &paths, &mut rows).expect("taken");
        let want = fields.extract(&text).unwrap();
        assert_eq!(
            found.map(|f| f.map(|r| r.get().to_string())),
            want.map(|f| f.map(|r| r.get().to_string()))
        );
        file.push_row(&rows, 0);
        rows.truncate(0);
        all.push_str(&text);
        all.push('\n');
    }
    let got = file.finish(&direct, true).unwrap();
    let mut d = plan.decoder().unwrap();
    let mut want = Vec::new();
    decode_all(&mut d, all.as_bytes(), &mut want).unwrap();
    let mut at = 0;
    for w in &want {
        assert_eq!(&got.slice(at, w.num_rows()), w, "rows {at}..");
        at += w.num_rows();
    }
    assert_eq!(at, 3000);
}
