/*
 * Lets librdkafka's mock cluster keep more than ~5 MiB per partition.
 *
 * The mock sets every partition's retention to 5 MiB and 100,000 batches when the partition is
 * created (rd_kafka_mock_partition_init, hard-coded) and drops older batches silently. The
 * benchmark's real shape needs GBs per partition, so after creating its topic the benchmark's
 * broker raises both limits here, through the mock's own structures, compiled against the
 * headers of the librdkafka that rdkafka-sys built (bench/build.rs).
 *
 * Returns the topic's partition count, or -1 if there is no mock cluster or no such topic.
 */
#include "rdkafka_int.h"
#include "rdkafka_mock_int.h"

int lakesink_bench_mock_retention(rd_kafka_t *rk, const char *topic,
                                  size_t max_bytes, size_t max_batches) {
        rd_kafka_mock_cluster_t *mcluster = rd_kafka_handle_mock_cluster(rk);
        rd_kafka_mock_topic_t *mtopic;
        int i, n;

        if (!mcluster)
                return -1;
        mtx_lock(&mcluster->lock);
        mtopic = rd_kafka_mock_topic_find(mcluster, topic);
        if (!mtopic) {
                mtx_unlock(&mcluster->lock);
                return -1;
        }
        for (i = 0; i < mtopic->partition_cnt; i++) {
                mtopic->partitions[i].max_size = max_bytes;
                mtopic->partitions[i].max_cnt  = max_batches;
        }
        n = mtopic->partition_cnt;
        mtx_unlock(&mcluster->lock);
        return n;
}
