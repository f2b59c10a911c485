// Exits 0 once the broker at argv[2] answers a metadata request and has a controller, and, given
// argv[3], once the cluster it belongs to has that many brokers registered and unfenced.
const { Kafka, logLevel } = require('kafkajs');
const want = process.argv[3] === undefined ? 0 : Number(process.argv[3]);
const admin = new Kafka({ clientId: 'infra-wait', brokers: [process.argv[2]], logLevel: logLevel.NOTHING,
  retry: { retries: 0 }, connectionTimeout: 1000 }).admin();
admin.connect()
  .then(() => admin.describeCluster())
  .then((c) => process.exit(c.controller === null || c.brokers.length < want ? 1 : 0))
  .catch(() => process.exit(1));
