// Exits 0 once the broker at argv[2] answers a metadata request and has a controller.
const { Kafka, logLevel } = require('kafkajs');
const admin = new Kafka({ clientId: 'infra-wait', brokers: [process.argv[2]], logLevel: logLevel.NOTHING,
  retry: { retries: 0 }, connectionTimeout: 1000 }).admin();
admin.connect()
  .then(() => admin.describeCluster())
  .then((c) => process.exit(c.controller === null ? 1 : 0))
  .catch(() => process.exit(1));
