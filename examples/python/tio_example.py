"""A Tell It Once client in Python, as an NHS or council integration team would write it.

It publishes a child's communication needs as a hospital, records the family's consent,
enrols the child at a school and reads the profile there, then runs a durable
subscription for the school with credit and acks: it disconnects with a delivery
unacked, reconnects, gets that delivery again under the same number, acks it, and
receives the next update live. It also shows how a refusal names the field at fault.

Run it with run.sh (which makes the environment and the stubs):
    examples/python/run.sh --server localhost:7443 --pki ./tio-dev/dev-pki

Every outcome is checked; it exits 1 if any differs.
"""

import argparse
import queue
import sys
import time
import uuid

import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

from tio.v1 import care_pb2, care_pb2_grpc
from tio.v1 import categories_pb2
from tio.v1 import common_pb2
from tio.v1 import consent_pb2, consent_pb2_grpc
from tio.v1 import records_pb2, records_pb2_grpc
from tio.v1 import subscriptions_pb2, subscriptions_pb2_grpc

# A test-range NHS number (999...), accepted only by a development server.
CHILD = common_pb2.ChildRef(nhs_number="999 023 7573")
# How long to wait for a message that should come, in seconds.
WAIT = 30


class Agency:
    """One agency's connection: its certificate, and the professional acting."""

    def __init__(self, server, pki, name, professional):
        def read(file):
            with open(f"{pki}/{file}", "rb") as handle:
                return handle.read()

        credentials = grpc.ssl_channel_credentials(read("ca.crt"), read(f"{name}.key"), read(f"{name}.crt"))
        self.channel = grpc.secure_channel(server, credentials)
        # Sent on every call: the audit log records who acted.
        self.metadata = (("x-tio-professional", professional),)
        self.records = records_pb2_grpc.RecordServiceStub(self.channel)
        self.consents = consent_pb2_grpc.ConsentServiceStub(self.channel)
        self.relationships = care_pb2_grpc.CareRelationshipServiceStub(self.channel)
        self.subscriptions = subscriptions_pb2_grpc.SubscriptionServiceStub(self.channel)


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def communication_needs(text):
    needs = categories_pb2.CommunicationNeeds(how_i_communicate=text, things_you_must_know=["Family speaks Polish"])
    return categories_pb2.CategoryValue(communication_needs=needs)


def publish(hospital, text):
    request = records_pb2.PublishRequest(
        child=CHILD,
        category=common_pb2.CATEGORY_COMMUNICATION_NEEDS,
        value=communication_needs(text),
        source_reference="EPR-PY-1",
        # Unique per update: a retry with the same key is not stored twice.
        idempotency_key=str(uuid.uuid4()),
    )
    return hospital.records.Publish(request, metadata=hospital.metadata)


class DeliveryStream:
    """An open delivery stream: requests go in through a queue, responses come out."""

    def __init__(self, agency, name, credit):
        self.requests = queue.Queue()
        self.requests.put(subscriptions_pb2.SubscribeRequest(open=subscriptions_pb2.OpenSubscription(name=name, credit=credit)))
        # A deadline on the whole stream, so that a delivery that never comes ends the
        # example with an error instead of waiting for ever.
        self.call = agency.subscriptions.Subscribe(self._outgoing(), metadata=agency.metadata, timeout=WAIT)
        self.responses = iter(self.call)

    def _outgoing(self):
        while True:
            message = self.requests.get()
            if message is None:
                return
            yield message

    def next_delivery(self):
        """The next delivery, skipping heartbeats; fails the example if none comes in time."""
        try:
            for response in self.responses:
                if response.HasField("delivery"):
                    return response.delivery
        except grpc.RpcError as error:
            check(False, f"a delivery within {WAIT} s (the stream ended: {error.code().name})")
        check(False, "a delivery (the stream ended)")

    def ack(self, *numbers):
        self.requests.put(subscriptions_pb2.SubscribeRequest(ack=subscriptions_pb2.Ack(delivery_numbers=list(numbers))))

    def credit(self, additional):
        self.requests.put(subscriptions_pb2.SubscribeRequest(credit=subscriptions_pb2.Credit(additional=additional)))

    def close(self):
        self.requests.put(None)
        self.call.cancel()


def wait_until_closed(agency, name):
    """Waits until the broker no longer holds a stream open for subscription `name`."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        status = agency.subscriptions.GetSubscriptionStatus(
            subscriptions_pb2.GetSubscriptionStatusRequest(name=name), metadata=agency.metadata
        )
        if not status.open:
            return
        time.sleep(0.05)
    check(False, f"subscription {name} closed after the client went")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="localhost:7443", help="the broker, HOST:PORT (default %(default)s)")
    parser.add_argument("--pki", required=True, help="a development PKI directory (ca.crt, hospital.crt, ...)")
    args = parser.parse_args()

    hospital = Agency(args.server, args.pki, "hospital", "dr-okafor")
    school = Agency(args.server, args.pki, "school", "senco-patel")

    # 1. The hospital publishes; the reply says when and where the update was stored.
    published = publish(hospital, "Makaton signs")
    check(published.update_id != "", f"the hospital published update {published.update_id}")

    # 2. A refusal names the field at fault (google.rpc.BadRequest in the status details).
    try:
        bad = records_pb2.PublishRequest(
            child=common_pb2.ChildRef(nhs_number="999 023 7574"),
            category=common_pb2.CATEGORY_COMMUNICATION_NEEDS,
            value=communication_needs("x"),
            idempotency_key=str(uuid.uuid4()),
        )
        hospital.records.Publish(bad, metadata=hospital.metadata)
        check(False, "a bad NHS number is refused")
    except grpc.RpcError as error:
        fields = []
        status = rpc_status.from_call(error)
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                fields = [violation.field for violation in bad_request.field_violations]
        check(error.code() == grpc.StatusCode.INVALID_ARGUMENT and fields == ["child.nhs_number"],
              f"a bad NHS number is refused: {error.code().name}, field {fields}")

    # 3. The family's consent, recorded by the hospital with its evidence and lawful basis.
    consent = hospital.consents.RecordConsent(
        consent_pb2.RecordConsentRequest(
            child=CHILD,
            giver_role=consent_pb2.CONSENT_GIVER_ROLE_PARENT_WITH_PARENTAL_RESPONSIBILITY,
            giver_name="Anna Nowak",
            categories=[common_pb2.CATEGORY_COMMUNICATION_NEEDS],
            recipients=consent_pb2.Recipients(sectors=[common_pb2.SECTOR_EDUCATION]),
            purpose="So that school knows how to support her",
            lawful_basis=consent_pb2.LAWFUL_BASIS_PUBLIC_TASK,
            special_category_condition=consent_pb2.SPECIAL_CATEGORY_CONDITION_HEALTH_OR_SOCIAL_CARE,
            evidence=consent_pb2.ConsentEvidence(
                method=consent_pb2.CONSENT_METHOD_IN_PERSON, language="pl", interpreter_present=True
            ),
        ),
        metadata=hospital.metadata,
    )
    check(consent.consent_id != "", f"consent {consent.consent_id} recorded")

    # 4. The school enrols the child and reads the profile instead of asking again.
    school.relationships.DeclareRelationship(
        care_pb2.DeclareRelationshipRequest(child=CHILD, kind=care_pb2.RELATIONSHIP_KIND_ENROLMENT, reference="roll-7"),
        metadata=school.metadata,
    )
    profile = school.records.GetProfile(records_pb2.GetProfileRequest(child=CHILD), metadata=school.metadata)
    shown = [entry.value.communication_needs.how_i_communicate for entry in profile.entries]
    check(shown == ["Makaton signs"], f"the school's profile shows {shown}")

    # 5. A durable subscription, live from now, with at most 10 deliveries unacked.
    # An agency gets one copy of each update: of its subscriptions taking a category,
    # the one whose name sorts first delivers it. The name starts with "0" so that this
    # one sorts before the usual names; one sorting earlier still would take the updates.
    name = f"0-python-example-{uuid.uuid4().hex[:8]}"
    existing = school.subscriptions.ListSubscriptions(
        subscriptions_pb2.ListSubscriptionsRequest(), metadata=school.metadata
    ).subscriptions
    earlier = [s.name for s in existing if s.name < name and common_pb2.CATEGORY_COMMUNICATION_NEEDS in s.categories]
    check(not earlier, f"no subscription of the school sorting before {name} takes communication needs ({earlier})")
    school.subscriptions.CreateSubscription(
        subscriptions_pb2.CreateSubscriptionRequest(
            name=name,
            categories=[common_pb2.CATEGORY_COMMUNICATION_NEEDS],
            start=subscriptions_pb2.StartFrom(live=subscriptions_pb2.Live()),
            max_in_flight=10,
        ),
        metadata=school.metadata,
    )
    stream = DeliveryStream(school, name, credit=1)
    publish(hospital, "Makaton signs and a picture board")
    first = stream.next_delivery()
    check(first.delivery_number == 1 and not first.redelivery,
          f"delivery {first.delivery_number}: {first.value.communication_needs.how_i_communicate}")
    # Disconnect without acking it: the broker keeps it for the subscription.
    stream.close()

    # 6. Reconnect once the broker has seen the stream close (one stream per
    # subscription at a time): the unacked delivery comes again under its number.
    wait_until_closed(school, name)
    stream = DeliveryStream(school, name, credit=1)
    again = stream.next_delivery()
    check(again.delivery_number == 1 and again.redelivery, f"delivery {again.delivery_number} again after reconnecting")
    stream.ack(again.delivery_number)
    stream.credit(1)
    publish(hospital, "Makaton signs, a picture board, and needs a quiet room")
    second = stream.next_delivery()
    check(second.delivery_number == 2 and not second.redelivery,
          f"delivery {second.delivery_number} live: {second.value.communication_needs.how_i_communicate}")
    stream.ack(second.delivery_number)
    stream.close()
    wait_until_closed(school, name)

    status = school.subscriptions.GetSubscriptionStatus(
        subscriptions_pb2.GetSubscriptionStatusRequest(name=name), metadata=school.metadata
    )
    check(status.last_delivered_number == 2, f"the subscription delivered {status.last_delivered_number}")

    # Tidy up: withdraw the consent and delete the subscription (both audited).
    hospital.consents.WithdrawConsent(
        consent_pb2.WithdrawConsentRequest(
            child=CHILD,
            consent_id=consent.consent_id,
            reason="example finished",
            evidence=consent_pb2.ConsentEvidence(method=consent_pb2.CONSENT_METHOD_IN_PERSON),
        ),
        metadata=hospital.metadata,
    )
    school.subscriptions.DeleteSubscription(
        subscriptions_pb2.DeleteSubscriptionRequest(name=name), metadata=school.metadata
    )
    print("The Python example checked out.")


if __name__ == "__main__":
    main()
