// Creates the database named by the URL in argv[2] if it is missing. The server is not ours.
const { Client } = require('pg');
const url = new URL(process.argv[2]);
const name = decodeURIComponent(url.pathname.slice(1));
const admin = new URL(url); admin.pathname = '/postgres';
(async () => {
  const c = new Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5000 });
  await c.connect();
  const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  if (rowCount === 0) {
    await c.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    console.log(`infra:up: PostgreSQL database ${name} created`);
  } else console.log(`infra:up: PostgreSQL database ${name} present`);
  await c.end();
})().catch((e) => { console.error(`PostgreSQL: ${e.message}`); process.exit(1); });
