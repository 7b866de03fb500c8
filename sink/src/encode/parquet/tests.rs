use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::Array;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn plan(strict: bool) -> Arc<ParquetPlan> {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "user",
            DataType::Struct(Fields::from(vec![Field::new("name", DataType::Utf8, true)])),
            true,
        ),
        Field::new("params", DataType::Utf8, true),
    ]);
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(3))
        .build();
    Arc::new(ParquetPlan::new(
        Arc::new(schema),
        "test".into(),
        props,
        strict,
    ))
}

fn read(bytes: Vec<u8>) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn records_become_typed_rows_and_objects_in_string_columns_keep_their_json_text() {
    let mut e: Box<dyn Encoder> = Box::new(ParquetEncoder::new(plan(false)));
    e.append(br#"{"id":1,"t":"2024-01-02T01:02:03.456Z","user":{"name":"a"},"params":{"k":"v\"q","n":[1,2.5,null,true]}}"#).unwrap();
    e.append(br#"{"id":2,"t":"2024-01-02T01:02:04Z","params":"plain","extra":1}"#)
        .unwrap();
    let mut rejected = Vec::new();
    e.settle(&mut rejected).unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    let batches = read(e.finish().unwrap());
    let b = &batches[0];
    assert_eq!(b.num_rows(), 2);
    let ids = b.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[1, 2]);
    let t = b.column(1).as_primitive::<TimestampMillisecondType>();
    assert_eq!(t.value(0), 1_704_157_323_456);
    let params = b.column(3).as_string::<i32>();
    assert_eq!(params.value(0), r#"{"k":"v\"q","n":[1,2.5,null,true]}"#);
    assert_eq!(params.value(1), "plain");
    let user = b.column(2).as_struct();
    assert!(user.is_null(1));
}

#[test]
fn a_record_that_does_not_fit_is_refused_with_its_field_and_the_others_are_kept() {
    let mut e = ParquetEncoder::new(plan(false));
    e.append(br#"{"id":1,"t":"2024-01-02T01:00:00Z"}"#).unwrap();
    e.append(br#"{"id":"x","t":"2024-01-02T01:00:00Z"}"#)
        .unwrap();
    e.append(br#"{"t":"2024-01-02T01:00:00Z"}"#).unwrap();
    e.append(br#"{"id":4,"t":"2024-01-02T01:00:00Z","user":{"name":7}}"#)
        .unwrap();
    e.append(br#"{"id":5,"t":"not a time"}"#).unwrap();
    let mut rejected = Vec::new();
    e.settle(&mut rejected).unwrap();
    let idx: Vec<usize> = rejected.iter().map(|r| r.index).collect();
    assert_eq!(idx, vec![1, 2, 4], "{rejected:?}");
    assert!(rejected[0].reason.contains("id"), "{}", rejected[0].reason);
    assert!(
        rejected[2].reason.contains("not a time"),
        "{}",
        rejected[2].reason
    );
    let batches = read(Box::new(e).finish().unwrap());
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    // user.name = 7 is kept: a string column takes any JSON value as its text.
    assert_eq!(ids, vec![1, 4]);
}

#[test]
fn unknown_fields_are_dropped_or_refused_by_policy() {
    let mut e = ParquetEncoder::new(plan(true));
    e.append(br#"{"id":1,"t":0,"extra":true}"#).unwrap();
    e.append(br#"{"id":2,"t":0}"#).unwrap();
    let mut rejected = Vec::new();
    e.settle(&mut rejected).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].index, 0);
    assert!(
        rejected[0].reason.contains("extra"),
        "{}",
        rejected[0].reason
    );
}

#[test]
fn row_groups_stream_out_and_the_parts_concatenate_to_the_file() {
    let mut e: Box<dyn Encoder> = Box::new(ParquetEncoder::new(plan(false)));
    let mut parts = Vec::new();
    let mut rejected = Vec::new();
    for i in 0..10 {
        e.append(format!(r#"{{"id":{i},"t":{i}}}"#).as_bytes())
            .unwrap();
        e.settle(&mut rejected).unwrap();
        if let Some(p) = e.take_ready(1) {
            parts.push(p);
        }
    }
    assert!(parts.len() >= 3, "row groups of 3 rows left as parts");
    parts.push(e.finish().unwrap());
    let batches = read(parts.concat());
    let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(n, 10);
}

#[test]
fn a_settle_past_row_group_rows_is_cut_into_row_groups_of_at_most_that_many() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut e: Box<dyn Encoder> = Box::new(ParquetEncoder::new(plan(false)));
    for i in 0..10 {
        e.append(format!(r#"{{"id":{i},"t":{i}}}"#).as_bytes())
            .unwrap();
    }
    // One settle of 10 rows with row_group_rows = 3.
    e.settle(&mut Vec::new()).unwrap();
    let file = e.finish().unwrap();
    let reader = SerializedFileReader::new(bytes::Bytes::from(file)).unwrap();
    let rows: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(rows, [3, 3, 3, 1]);
}

#[test]
fn avro_datums_are_decoded_straight_into_rows_and_one_the_schema_refuses_is_rejected_alone() {
    use lakesink_schema_registry::avro::to_arrow;
    use lakesink_schema_registry::wire::AvroDecoder;
    let avsc = r#"{"type":"record","name":"R","fields":[
      {"name":"id","type":"long"},
      {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
      {"name":"x","type":"double"}]}"#;
    let decoder = AvroDecoder::new(avsc).unwrap();
    let schema = Arc::new(to_arrow(avsc).unwrap());
    let direct = AvroArrow::new(&decoder, schema.clone()).unwrap();
    let props = WriterProperties::builder().build();
    let plan = Arc::new(ParquetPlan::new(schema, "test".into(), props, false).with_avro(direct));
    let datum = |id: i64, x: f64| {
        let mut b = Vec::new();
        let finite = if x.is_nan() { 0.0 } else { x };
        let v = serde_json::json!({"id": id, "t": 1_704_157_323_456i64, "x": finite});
        decoder.encode(&v, &mut b).unwrap();
        if x.is_nan() {
            // JSON has no NaN: write it over the double's 8 bytes.
            let n = b.len();
            b[n - 8..].copy_from_slice(&f64::NAN.to_le_bytes());
        }
        b
    };
    let mut e: Box<dyn Encoder> = Box::new(ParquetEncoder::new(plan));
    // The last byte of a datum may be a newline's: nothing is added or stripped.
    let ten = datum(10, f64::from_bits(0x0a00_0000_0000_0000));
    assert_eq!(ten.last(), Some(&b'\n'));
    for d in [
        datum(1, 0.5),
        datum(2, f64::NAN),
        ten.clone(),
        datum(3, 1.5),
    ] {
        e.append(&d).unwrap();
    }
    let mut rejected = Vec::new();
    e.settle(&mut rejected).unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].index, 1);
    assert_eq!(rejected[0].record, datum(2, f64::NAN));
    assert!(rejected[0].reason.contains('x'), "{}", rejected[0].reason);
    let batches = read(e.finish().unwrap());
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, [1, 10, 3]);
    let t = batches[0]
        .column(1)
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(t.value(0), 1_704_157_323_456);
}
