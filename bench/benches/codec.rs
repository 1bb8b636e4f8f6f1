//! Codec benches: `agentstate_protocol::Codec` (MessagePack maps with field names, and
//! JSON) encoding and decoding a full `PersistedState` whose `state_data` is a realistic
//! agent state of about `state_data_bytes` (as JSON).
//!
//! Names: `codec/op={encode,decode}/codec={msgpack,json}/state_data_bytes={}`; throughput
//! is in bytes of the encoded body.

use std::hint::black_box;
use std::time::Duration;

use agentstate_bench::sample;
use agentstate_protocol::{Codec, PersistedState};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const STATE_DATA_BYTES: [usize; 3] = [256, 4 * 1024, 64 * 1024];

fn name(codec: Codec) -> &'static str {
    match codec {
        Codec::MsgPack => "msgpack",
        Codec::Json => "json",
    }
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for size in STATE_DATA_BYTES {
        let state = sample::persisted_state(size);
        for codec in [Codec::MsgPack, Codec::Json] {
            let body = codec.encode(&state).expect("encode a sample state");
            // Pair every encode with a decode: the bench measures a lossless round trip.
            let back: PersistedState = codec.decode(&body).expect("decode a sample state");
            assert_eq!(back, state, "{codec:?} round trip");
            group.throughput(Throughput::Bytes(body.len() as u64));
            let params = format!("codec={}/state_data_bytes={size}", name(codec));
            group.bench_function(BenchmarkId::new("op=encode", &params), |b| {
                b.iter(|| codec.encode(black_box(&state)).expect("encode"))
            });
            group.bench_function(BenchmarkId::new("op=decode", &params), |b| {
                b.iter(|| {
                    codec
                        .decode::<PersistedState>(black_box(&body))
                        .expect("decode")
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = codecs
}
criterion_main!(benches);
