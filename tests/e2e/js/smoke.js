// kafkajs smoke test against a running Strata broker.
//
//   node smoke.js BROKER TOPIC COUNT
//
// Creates TOPIC (3 partitions, a retention.ms override) with the admin
// client, produces COUNT keyed messages with an idempotent producer
// (message i goes to partition i % 3; batches alternate none/gzip), reads
// back offsets and configs, and prints one JSON document on stdout for the
// Python side (tests/e2e/test_kafkajs.py) to check; it then consumes with
// another client. kafkajs' consumer needs consumer groups, so it is not used.
'use strict';

const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs');

async function main() {
  const [broker, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg || '1000');
  if (!broker || !topic) throw new Error('usage: node smoke.js BROKER TOPIC [COUNT]');

  const kafka = new Kafka({
    clientId: 'strata-e2e-kafkajs',
    brokers: [broker],
    logLevel: logLevel.WARN,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 200 },
  });

  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    waitForLeaders: true,
    timeout: 30000,
    topics: [{
      topic,
      numPartitions: 3,
      replicationFactor: 1,
      configEntries: [{ name: 'retention.ms', value: '86400000' }],
    }],
  });
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  const listed = await admin.listTopics();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  const acks = [];
  const batchSize = 100;
  for (let start = 0, b = 0; start < count; start += batchSize, b++) {
    const messages = [];
    for (let i = start; i < Math.min(count, start + batchSize); i++) {
      messages.push({ key: `k${i}`, value: `kafkajs-${i}`, partition: i % 3 });
    }
    const res = await producer.send({
      topic,
      acks: -1,
      compression: b % 2 ? CompressionTypes.GZIP : CompressionTypes.None,
      messages,
    });
    acks.push(...res);
  }
  await producer.disconnect();

  const offsets = await admin.fetchTopicOffsets(topic);
  const configs = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
  });
  const cluster = await admin.describeCluster();
  await admin.disconnect();

  process.stdout.write(JSON.stringify({
    created,
    listed: listed.includes(topic),
    partitions: meta.topics[0].partitions.map((p) => ({ id: p.partitionId, leader: p.leader })),
    acks,
    offsets,
    retentionMs: configs.resources[0].configEntries.map((e) => [e.configName, e.configValue]),
    cluster,
  }) + '\n');
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
