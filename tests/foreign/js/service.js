// A wasi:http function in JavaScript, built by componentize-js (StarlingMonkey; see
// scripts/build-foreign-components).
//
// GET .../ANYTHING answers {"lang", "path", "caller"} and logs a line; with ?to=URL it first
// fetches URL and adds the callee's "status", or the "error" fetch threw. GET .../throw throws,
// which StarlingMonkey answers with a bare 500 after writing the exception to stderr.

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (url.pathname.endsWith('/throw')) {
    throw new Error('javascript threw on purpose');
  }
  const doc = {
    lang: 'javascript',
    path: url.pathname + url.search,
    caller: request.headers.get('septa-caller'),
  };
  const to = url.searchParams.get('to');
  if (to) {
    try {
      doc.status = (await fetch(to)).status;
    } catch (e) {
      doc.error = String(e);
    }
  }
  console.log(`javascript served ${doc.path}`);
  return new Response(JSON.stringify(doc), { headers: { 'content-type': 'application/json' } });
}
