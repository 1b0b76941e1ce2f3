"""A wasi:http function in Python, built by componentize-py (scripts/build-foreign-components).

GET .../ANYTHING answers {"lang", "path", "caller"} and prints a line; with ?to=URL it first GETs
URL through wasi:http and adds the callee's "status", or the "error" the host gave instead.
"""

import json
from urllib.parse import parse_qs, urlparse

from wit_world import exports
from wit_world.imports import outgoing_handler
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
)
from wit_world.types import Err, Ok


def fetch(url):
    """The status of GET `url`, or the error code the host answered with."""
    target = urlparse(url)
    request = OutgoingRequest(Fields())
    request.set_method(Method_Get())
    request.set_scheme(Scheme_Http())
    request.set_authority(target.netloc)
    request.set_path_with_query(target.path or "/")
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        return {"error": repr(e.value)}
    while (answer := future.get()) is None:
        future.subscribe().block()
    response = answer.value if isinstance(answer, Ok) else answer
    if isinstance(response, Ok):
        return {"status": response.value.status()}
    return {"error": repr(response.value)}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, out: ResponseOutparam) -> None:
        target = request.path_with_query() or "/"
        headers = {name: value.decode() for name, value in request.headers().entries()}
        doc = {"lang": "python", "path": target, "caller": headers.get("septa-caller")}
        query = parse_qs(urlparse(target).query)
        if "to" in query:
            doc.update(fetch(query["to"][0]))
        print(f"python served {target}")
        body = json.dumps(doc).encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        outgoing = response.body()
        ResponseOutparam.set(out, Ok(response))
        with outgoing.write() as stream:
            stream.blocking_write_and_flush(body)
        OutgoingBody.finish(outgoing, None)
