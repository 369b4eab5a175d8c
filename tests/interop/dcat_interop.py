#!/usr/bin/env python3
"""An independent RDF implementation (rdflib) for the DCAT catalog's test
(tests/integration/opendata_dcat.rs).

Usage: dcat_interop.py CATALOG.jsonld CATALOG.ttl

Parses both files (JSON-LD with its inline context only: no document is fetched),
and prints one JSON object on stdout:
  isomorphic   whether the two graphs are the same (rdflib.compare.isomorphic)
  triples      the number of triples of each: [jsonld, turtle]
  datasets     the dcterms:identifier of every dcat:Dataset, sorted
  services     the dcterms:identifier of every dcat:DataService that has one, sorted
  titles       {identifier: {language: title}} of every dataset
  frequency    {identifier: accrualPeriodicity IRI}
  downloads    {identifier: [downloadURL, ...]} sorted
  only_in_jsonld, only_in_turtle   a few triples that differ (for the failure message)
Exits 1 on a parse error.
"""

import json
import sys

from rdflib import Graph, Namespace, URIRef
from rdflib.compare import graph_diff, isomorphic, to_isomorphic
from rdflib.namespace import DCTERMS, RDF

DCAT = Namespace("http://www.w3.org/ns/dcat#")


def identifiers(graph: Graph, kind: URIRef) -> list:
    return sorted(
        str(graph.value(node, DCTERMS.identifier))
        for node in graph.subjects(RDF.type, kind)
        if graph.value(node, DCTERMS.identifier) is not None
    )


def main() -> int:
    jsonld_path, turtle_path = sys.argv[1], sys.argv[2]
    from_jsonld = Graph()
    with open(jsonld_path, "rb") as f:
        from_jsonld.parse(data=f.read(), format="json-ld")
    from_turtle = Graph()
    with open(turtle_path, "rb") as f:
        from_turtle.parse(data=f.read(), format="turtle")

    same = isomorphic(from_jsonld, from_turtle)
    _, only_jsonld, only_turtle = graph_diff(to_isomorphic(from_jsonld), to_isomorphic(from_turtle))

    titles, frequency, downloads = {}, {}, {}
    for node in from_turtle.subjects(RDF.type, DCAT.Dataset):
        ident = str(from_turtle.value(node, DCTERMS.identifier))
        titles[ident] = {
            str(t.language): str(t) for t in from_turtle.objects(node, DCTERMS.title)
        }
        frequency[ident] = str(from_turtle.value(node, DCTERMS.accrualPeriodicity))
        downloads[ident] = sorted(
            str(url)
            for dist in from_turtle.objects(node, DCAT.distribution)
            for url in from_turtle.objects(dist, DCAT.downloadURL)
        )

    print(
        json.dumps(
            {
                "isomorphic": same,
                "triples": [len(from_jsonld), len(from_turtle)],
                "datasets": identifiers(from_turtle, DCAT.Dataset),
                "services": identifiers(from_turtle, DCAT.DataService),
                "titles": titles,
                "frequency": frequency,
                "downloads": downloads,
                "only_in_jsonld": [str(t) for t in list(only_jsonld)[:5]],
                "only_in_turtle": [str(t) for t in list(only_turtle)[:5]],
            },
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
