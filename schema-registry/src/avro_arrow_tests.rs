use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use serde_json::{json, Value};

use super::*;
use crate::avro::to_arrow;

/// Every type the direct path covers, plain and as `["null", T]`, nested.
const ALL: &str = r#"{"type":"record","name":"R","namespace":"n","fields":[
  {"name":"b","type":"boolean"},
  {"name":"i","type":"int"},
  {"name":"l","type":"long"},
  {"name":"f","type":"float"},
  {"name":"d","type":"double"},
  {"name":"by","type":"bytes"},
  {"name":"s","type":"string"},
  {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
  {"name":"fx","type":{"type":"fixed","name":"F","size":4}},
  {"name":"date","type":{"type":"int","logicalType":"date"}},
  {"name":"tms","type":{"type":"int","logicalType":"time-millis"}},
  {"name":"tus","type":{"type":"long","logicalType":"time-micros"}},
  {"name":"tsm","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"lts","type":{"type":"long","logicalType":"local-timestamp-micros"}},
  {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
  {"name":"decf","type":{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":18,"scale":3}},
  {"name":"wide","type":{"type":"bytes","logicalType":"decimal","precision":50,"scale":1}},
  {"name":"u","type":{"type":"string","logicalType":"uuid"}},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"maybe","type":{"type":"array","items":["null","long"]}},
  {"name":"attrs","type":{"type":"map","values":"long"}},
  {"name":"n","type":["null","string"],"default":null},
  {"name":"n2","type":["long","null"]},
  {"name":"nd","type":["null","double"],"default":null},
  {"name":"nts","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
  {"name":"ndec","type":["null",{"type":"bytes","logicalType":"decimal","precision":9,"scale":4}],"default":null},
  {"name":"nlist","type":["null",{"type":"array","items":"int"}],"default":null},
  {"name":"nmap","type":["null",{"type":"map","values":"string"}],"default":null},
  {"name":"user","type":{"type":"record","name":"U","fields":[
    {"name":"name","type":"string"},
    {"name":"level","type":["null","int"]}]}},
  {"name":"nuser","type":["null",{"type":"record","name":"V","fields":[
    {"name":"x","type":"string"},
    {"name":"inner","type":{"type":"record","name":"W","fields":[{"name":"y","type":"long"}]}}]}],"default":null}
]}"#;

fn rows() -> Vec<Value> {
    let full = json!({
        "b": true, "i": -7, "l": 1_234_567_890_123i64, "f": 1.1, "d": -2.5e300,
        "by": "00ff10", "s": "h\u{e9}llo \"q\" \n", "e": "C", "fx": "deadbeef",
        "date": 19_724, "tms": 3_600_000, "tus": 3_600_000_123i64,
        "tsm": 1_704_164_645_123i64, "tsu": 1_704_164_645_123_456i64, "lts": -5,
        "dec": "-1234.56", "decf": "123456789012345.678", "wide": "-12345678901234567890.1",
        "u": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "tags": ["a", "", "c"], "maybe": [1, null, 3], "attrs": {"k": 1, "j": -2},
        "n": "x", "n2": 5, "nd": 0.5, "nts": 0, "ndec": "0.0001", "nlist": [1, 2],
        "nmap": {"a": "b"},
        "user": {"name": "ann", "level": 3},
        "nuser": {"x": "v", "inner": {"y": 9}}
    });
    let mut nulls = full.clone();
    for k in ["n", "n2", "nd", "nts", "ndec", "nlist", "nmap", "nuser"] {
        nulls[k] = Value::Null;
    }
    nulls["user"]["level"] = Value::Null;
    nulls["tags"] = json!([]);
    nulls["attrs"] = json!({});
    nulls["maybe"] = json!([null]);
    let mut third = full.clone();
    third["s"] = json!("");
    third["dec"] = json!("0.05");
    third["nd"] = json!(-0.0);
    vec![full, nulls, third]
}

fn avro(decoder: &AvroDecoder, rows: &[Value]) -> Vec<Vec<u8>> {
    rows.iter()
        .map(|v| {
            let mut b = Vec::new();
            decoder.encode(v, &mut b).unwrap();
            b
        })
        .collect()
}

/// What the JSON path makes of the datums: their JSON text through arrow-json.
fn json_path(decoder: &AvroDecoder, schema: &SchemaRef, data: &[Vec<u8>]) -> RecordBatch {
    let mut text = String::new();
    for d in data {
        decoder.to_json(d, &mut text).unwrap();
        text.push('\n');
    }
    let mut dec = arrow_json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .unwrap();
    dec.decode(text.as_bytes()).unwrap();
    dec.flush().unwrap().unwrap()
}

fn direct(plan: &AvroArrow, data: &[Vec<u8>]) -> RecordBatch {
    let mut rows = plan.rows(data.len());
    for d in data {
        rows.append(d).unwrap();
    }
    rows.finish().unwrap()
}

#[test]
fn every_covered_type_gives_the_arrays_of_the_json_path() {
    let decoder = AvroDecoder::new(ALL).unwrap();
    let schema: SchemaRef = Arc::new(to_arrow(ALL).unwrap());
    let plan = AvroArrow::new(&decoder, schema.clone()).expect("covered");
    let data = avro(&decoder, &rows());
    let want = json_path(&decoder, &schema, &data);
    let got = direct(&plan, &data);
    assert_eq!(got.num_rows(), 3);
    for (i, f) in schema.fields().iter().enumerate() {
        assert_eq!(
            got.column(i).to_data(),
            want.column(i).to_data(),
            "column `{}`",
            f.name()
        );
    }
    assert_eq!(got, want);
    // The nulls are where the data put them.
    assert!(got.column_by_name("nuser").unwrap().is_null(1));
    assert!(got.column_by_name("nuser").unwrap().is_valid(0));
}

#[test]
fn nan_and_infinity_are_null_as_in_the_json_path_and_refused_where_no_null_may_go() {
    let schema = r#"{"type":"record","name":"R","fields":[
      {"name":"x","type":["null","double"]},{"name":"y","type":"float"}]}"#;
    let decoder = AvroDecoder::new(schema).unwrap();
    let arrow: SchemaRef = Arc::new(to_arrow(schema).unwrap());
    let plan = AvroArrow::new(&decoder, arrow.clone()).unwrap();
    let mut datum = vec![2]; // branch 1: double
    datum.extend_from_slice(&f64::NAN.to_le_bytes());
    datum.extend_from_slice(&1.5f32.to_le_bytes());
    let got = direct(&plan, std::slice::from_ref(&datum));
    assert_eq!(got, json_path(&decoder, &arrow, &[datum]));
    assert!(got.column(0).is_null(0));

    let mut datum = vec![2];
    datum.extend_from_slice(&1.0f64.to_le_bytes());
    datum.extend_from_slice(&f32::INFINITY.to_le_bytes());
    let mut rows = plan.rows(1);
    rows.append(&datum).unwrap();
    let e = rows.finish().unwrap_err().to_string();
    assert!(e.contains("y"), "{e}");
}

#[test]
fn a_schema_whose_columns_do_not_follow_the_avro_schema_gets_no_direct_plan() {
    use arrow_schema::{Field, Schema};
    let schema = r#"{"type":"record","name":"R","fields":[
      {"name":"x","type":"string"},{"name":"y","type":["null","long"]}]}"#;
    let decoder = AvroDecoder::new(schema).unwrap();
    let ok = Arc::new(to_arrow(schema).unwrap());
    assert!(AvroArrow::new(&decoder, ok).is_some());
    for other in [
        vec![Field::new("x", DataType::Utf8, false)],
        vec![
            Field::new("x", DataType::Utf8, false),
            Field::new("z", DataType::Int64, true),
        ],
        vec![
            Field::new("x", DataType::Int64, false),
            Field::new("y", DataType::Int64, true),
        ],
        // A nullable union into a column that may not hold a null.
        vec![
            Field::new("x", DataType::Utf8, false),
            Field::new("y", DataType::Int64, false),
        ],
    ] {
        let arrow = Arc::new(Schema::new(other));
        assert!(
            AvroArrow::new(&decoder, arrow.clone()).is_none(),
            "{arrow:?}"
        );
    }
}

#[test]
fn the_shipped_cloudtrail_schema_is_read_directly() {
    let text = include_str!("../schemas/cloudtrail.avsc");
    let decoder = AvroDecoder::new(text).unwrap();
    let arrow = Arc::new(to_arrow(text).unwrap());
    assert!(AvroArrow::new(&decoder, arrow).is_some());
}

#[test]
fn bad_data_is_refused_with_the_message_of_the_json_path() {
    let decoder = AvroDecoder::new(ALL).unwrap();
    let plan = AvroArrow::new(&decoder, Arc::new(to_arrow(ALL).unwrap())).unwrap();
    let good = avro(&decoder, &rows()).remove(0);
    let paths = vec![vec!["tsm".to_string()]];
    for bad in [
        good[..good.len() - 3].to_vec(),
        [good.as_slice(), &[0]].concat(),
    ] {
        let want = decoder.to_json(&bad, &mut String::new()).unwrap_err();
        assert_eq!(plan.rows(1).append(&bad).unwrap_err(), want);
        assert_eq!(
            decoder
                .project(&bad, &paths, &mut String::new())
                .unwrap_err(),
            want
        );
    }
    // A string that is not UTF-8, in a field the router does not read.
    let schema = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"t","type":"long"}]}"#;
    let d = AvroDecoder::new(schema).unwrap();
    let bad = [2, 0xff, 0x80, 4];
    let want = d.to_json(&bad, &mut String::new()).unwrap_err();
    let p = AvroArrow::new(&d, Arc::new(to_arrow(schema).unwrap())).unwrap();
    assert_eq!(p.rows(1).append(&bad).unwrap_err(), want);
    assert_eq!(
        d.project(&bad, &[vec!["t".to_string()]], &mut String::new())
            .unwrap_err(),
        want
    );
}

#[test]
fn a_projection_holds_the_routed_fields_as_the_json_path_writes_them() {
    let decoder = AvroDecoder::new(ALL).unwrap();
    let data = avro(&decoder, &rows());
    let paths = vec![
        vec!["tsm".to_string()],
        vec!["user".to_string(), "name".to_string()],
        vec!["nuser".to_string(), "inner".to_string(), "y".to_string()],
        vec!["e".to_string()],
    ];
    for d in &data {
        let mut whole = String::new();
        decoder.to_json(d, &mut whole).unwrap();
        let whole: Value = serde_json::from_str(&whole).unwrap();
        let mut part = String::new();
        decoder.project(d, &paths, &mut part).unwrap();
        let part: Value = serde_json::from_str(&part).unwrap();
        for p in &paths {
            let pointer = format!("/{}", p.join("/"));
            assert_eq!(part.pointer(&pointer), whole.pointer(&pointer), "{pointer}");
        }
        assert_eq!(part.as_object().unwrap().len(), 4, "{part}");
    }
}
