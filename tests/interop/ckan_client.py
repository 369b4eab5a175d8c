"""Reads a datagate node's public CKAN API with CKAN's own Python client, ckanapi.

Usage: ckan_client.py BASE_URL. Prints a JSON report of what the client saw; exits non-zero
if the client could not talk to the node as it talks to a CKAN portal.
"""
import json
import sys

import ckanapi

base = sys.argv[1]
ckan = ckanapi.RemoteCKAN(base, user_agent="datagate-interop/1")
report = {}
report["packages"] = ckan.action.package_list()
package = ckan.action.package_show(id=report["packages"][0])
report["license"] = package["license_id"]
search = ckan.action.package_search(q="*:*", rows=10)
assert search["count"] == len(report["packages"]), search
page = ckan.action.datastore_search(resource_id=package["resources"][0]["id"], limit=5)
report["total"] = page["total"]
report["first_code"] = page["records"][0]["code"]
assert len(page["records"]) == 5, page
filtered = ckan.action.datastore_search(
    resource_id=package["resources"][0]["id"],
    filters={"province": "Cần Thơ"},
    sort="population desc",
    limit=2,
)
assert all(r["province"] == "Cần Thơ" for r in filtered["records"]), filtered
try:
    ckan.action.package_show(id="no-such-dataset")
    report["not_found"] = "none"
except ckanapi.NotFound:
    report["not_found"] = "NotFound"
try:
    ckan.action.datastore_search(resource_id=package["resources"][0]["id"], limit=-1)
    report["validation"] = "none"
except ckanapi.ValidationError:
    report["validation"] = "ValidationError"
print(json.dumps(report))
