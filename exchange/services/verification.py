"""`tongban.v1.VerificationService`: verify e-certificates, hand out trust bundles.

Open to every caller. Verify checks a token (or QR code holding one) on the event loop
with the cached verifier; ids and QR links, the explanation of a failed STATUS and the
cache's own refresh read the store on a worker thread. VerifyStream reads ahead and
verifies what has arrived in batches on worker threads. Looking a certificate up by id
reveals its content, so that is recorded in the audit trail under its holder;
verifying a token the caller already holds is not.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format, timestamp_pb2

from certstore.certificates import StoredCertificate
from domain.errors import InvalidRequest, NotFound
from domain.records import canonical_json
from domain.subjects import parse_key
from exchange.app.verification import quick_verdict, verify_presented
from exchange.auth.identity import current_caller
from exchange.certificates.library import CertificateLibrary
from exchange.certificates.publisher import PublishedTrust
from exchange.certificates.usage import OnlineCopyVerdict
from exchange.certificates.verification import (
    OnlineVerdict,
    Presented,
    PresentedKind,
    check_presented,
    usage_copy_of,
)
from exchange.generated import verification_pb2, verification_pb2_grpc
from exchange.hub import Hub
from exchange.metrics import CERTIFICATES_VERIFIED
from exchange.services.certificates import certificate_to_proto, usage_copy_to_proto
from signing import CheckName, Verdict
from signing.department import sign_department_keys
from signing.keys import PublicKey
from signing.receipt import answer_from_json, verify_receipt
from signing.usage_copy import CopyCheckName

Context = grpc.aio.ServicerContext[Any, Any]

MAX_RECEIPT_CHARS = 1_000_000
STREAM_READ_AHEAD = 64
# A stream verifies what has arrived in batches of up to STREAM_BATCH requests, with at
# most STREAM_BATCHES of them on worker threads at once.
STREAM_BATCH = 32
STREAM_BATCHES = 2
_CHECKS = {name: verification_pb2.CheckName.Value(f"CHECK_NAME_{name.value}") for name in CheckName}
_COPY_CHECKS = {
    name: verification_pb2.CheckName.Value(f"CHECK_NAME_{name.value}") for name in CopyCheckName
}


def verdict_to_proto(result: OnlineVerdict) -> verification_pb2.Verdict:
    """A verdict as protobuf: every check in order, and the certificate as stated."""
    verdict: Verdict = result.verdict
    message = verification_pb2.Verdict(valid=verdict.valid)
    add = message.checks.add
    for check in verdict.checks:
        add(check=_CHECKS[check.name], passed=check.passed, reason=check.reason)
    if verdict.certificate is not None:
        stored = result.stored
        if stored is not None and stored.id == verdict.certificate.id:
            message.certificate.CopyFrom(certificate_to_proto(stored.certificate, stored=stored))
        else:
            message.certificate.CopyFrom(certificate_to_proto(verdict.certificate))
    message.verified_at.seconds = int(result.verified_at.timestamp())
    for suite in result.suites:
        message.suites.add(
            alg=suite.alg,
            suite=suite.suite,
            kid=suite.kid,
            valid=suite.valid,
            reasons=list(suite.reasons),
        )
    return message


def copy_verdict_to_proto(result: OnlineCopyVerdict) -> verification_pb2.Verdict:
    """A usage copy's verdict: the copy's checks and statement, the certificate's checks."""
    verdict = result.verdict
    if verdict.certificate is not None:
        message = verdict_to_proto(
            OnlineVerdict(verdict.certificate, result.stored, result.verified_at)
        )
    else:
        message = verification_pb2.Verdict()
        message.verified_at.seconds = int(result.verified_at.timestamp())
    message.valid = verdict.valid
    add = message.usage_copy_checks.add
    for check in verdict.checks:
        add(check=_COPY_CHECKS[check.name], passed=check.passed, reason=check.reason)
    if verdict.usage_copy is not None:
        message.usage_copy.CopyFrom(usage_copy_to_proto(verdict.usage_copy))
    return message


async def _read_into(
    requests: AsyncIterator[verification_pb2.VerifyStreamRequest],
    queue: asyncio.Queue[verification_pb2.VerifyStreamRequest | BaseException | None],
) -> None:
    """Move `requests` into `queue`, then None; a failure to read goes in as itself."""
    try:
        async for request in requests:
            await queue.put(request)
    except Exception as exc:  # handed to the writer, which raises it in the call
        await queue.put(exc)
        return
    await queue.put(None)


def _stream_error(
    correlation_id: str, error: InvalidRequest | NotFound
) -> verification_pb2.VerifyStreamResponse:
    return verification_pb2.VerifyStreamResponse(correlation_id=correlation_id, error=error.message)


@dataclass(frozen=True, slots=True)
class _StreamAnswer:
    response: verification_pb2.VerifyStreamResponse
    # The certificate read from the store for an id: its holder is told in the audit.
    looked_up: StoredCertificate | None = None


async def _next_batch(
    queue: asyncio.Queue[verification_pb2.VerifyStreamRequest | BaseException | None],
    *,
    wait: bool,
) -> tuple[list[verification_pb2.VerifyStreamRequest], bool]:
    """What has arrived, up to STREAM_BATCH requests (waiting for one when `wait`),
    and whether more may come.

    Raises: the exception the reader met.
    """
    batch: list[verification_pb2.VerifyStreamRequest] = []
    while len(batch) < STREAM_BATCH:
        if wait and not batch:
            item = await queue.get()
        elif queue.empty():
            break
        else:
            item = queue.get_nowait()
        if item is None:
            return batch, False
        if isinstance(item, BaseException):
            raise item
        batch.append(item)
    return batch, True


def _answer_batch(
    library: CertificateLibrary,
    requests: list[verification_pb2.VerifyStreamRequest],
    trust: PublishedTrust,
) -> list[_StreamAnswer]:
    """Verify a batch of stream requests (on a worker thread: it reads the store)."""
    answers = []
    for request in requests:
        correlation_id = request.correlation_id
        try:
            presented = presented_from(request)
            copy = usage_copy_of(presented)
            if copy is not None:
                given = request.certificate_token or None
                copied = library.use.verify_usage_copy(copy, given, trust)
                response = verification_pb2.VerifyStreamResponse(
                    correlation_id=correlation_id, verdict=copy_verdict_to_proto(copied)
                )
                answers.append(_StreamAnswer(response, copied.stored if given is None else None))
                continue
            if request.certificate_token:
                raise InvalidRequest("certificate_token", "is sent only with a usage copy")
            verified = verify_presented(library, presented, trust)
            result, stored = verified.result, verified.looked_up
        except (InvalidRequest, NotFound) as exc:
            answers.append(_StreamAnswer(_stream_error(correlation_id, exc)))
            continue
        response = verification_pb2.VerifyStreamResponse(
            correlation_id=correlation_id, verdict=verdict_to_proto(result)
        )
        answers.append(_StreamAnswer(response, stored))
    return answers


def presented_from(request: Any) -> Presented:
    """What a Verify or VerifyStream request presents.

    Raises:
        InvalidRequest: nothing presented, or a malformed id or QR text.
    """
    which = request.WhichOneof("presented")
    if which is None:
        raise InvalidRequest(
            "presented", "send one of certificate_id, token, qr_text or usage_copy"
        )
    presented = Presented(PresentedKind(which), getattr(request, which))
    check_presented(presented)
    return presented


class VerificationServicer(verification_pb2_grpc.VerificationServiceServicer):
    """Verify, VerifyStream and GetTrustBundle."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def Verify(
        self, request: verification_pb2.VerifyRequest, context: Context
    ) -> verification_pb2.VerifyResponse:
        presented = presented_from(request)
        copy = usage_copy_of(presented)
        if copy is not None:
            copied = await self.verify_copy(copy, request.certificate_token or None)
            return verification_pb2.VerifyResponse(verdict=copy_verdict_to_proto(copied))
        if request.certificate_token:
            raise InvalidRequest("certificate_token", "is sent only with a usage copy")
        result = await self.verify(presented)
        return verification_pb2.VerifyResponse(verdict=verdict_to_proto(result))

    async def VerifyStream(
        self,
        request_iterator: AsyncIterator[verification_pb2.VerifyStreamRequest],
        context: Context,
    ) -> AsyncIterator[verification_pb2.VerifyStreamResponse]:
        # Three stages overlap: a task reads requests ahead; what has arrived is verified
        # in batches on worker threads (the signature check releases the GIL, so a batch
        # is checked while the loop reads and writes); answers go out in request order.
        ahead: asyncio.Queue[verification_pb2.VerifyStreamRequest | BaseException | None]
        ahead = asyncio.Queue(maxsize=STREAM_READ_AHEAD)
        reader = asyncio.create_task(_read_into(request_iterator, ahead))
        workers = ThreadPoolExecutor(STREAM_BATCHES, thread_name_prefix="tongban-verify")
        in_flight: deque[asyncio.Future[list[_StreamAnswer]]] = deque()
        reading = True
        try:
            while reading or in_flight:
                if reading and len(in_flight) < STREAM_BATCHES:
                    batch, reading = await _next_batch(ahead, wait=not in_flight)
                    if batch:
                        trust = await self._trust()
                        in_flight.append(
                            asyncio.get_running_loop().run_in_executor(
                                workers, _answer_batch, self.hub.certificates, batch, trust
                            )
                        )
                    if reading and len(in_flight) < STREAM_BATCHES and not ahead.empty():
                        continue
                if in_flight:
                    answers = await in_flight.popleft()
                    await self._audit_lookups(answers)
                    for answer in answers:
                        yield answer.response
        finally:
            reader.cancel()
            for pending in in_flight:
                pending.cancel()
            workers.shutdown(wait=False, cancel_futures=True)

    async def _audit_lookups(self, answers: list[_StreamAnswer]) -> None:
        await asyncio.gather(
            *(
                self._audit_lookup(a.looked_up, a.response.verdict.valid)
                for a in answers
                if a.looked_up is not None
            )
        )

    async def GetTrustBundle(
        self, request: verification_pb2.GetTrustBundleRequest, context: Context
    ) -> verification_pb2.GetTrustBundleResponse:
        trust = await asyncio.to_thread(self.hub.certificates.trust.current)
        bundle, status_list, root = trust.require_signed()
        next_update = timestamp_pb2.Timestamp(seconds=int(trust.next_update.timestamp()))
        return verification_pb2.GetTrustBundleResponse(
            trust_bundle=bundle,
            status_list=status_list,
            root_public_jwk=json.dumps(root, sort_keys=True),
            next_update=next_update,
            department_keys=await asyncio.to_thread(self._department_keys),
        )

    async def VerifyReceipt(
        self, request: verification_pb2.VerifyReceiptRequest, context: Context
    ) -> verification_pb2.VerifyReceiptResponse:
        """Check a receipt against the root key, and against its answer when given."""
        if not request.receipt:
            raise InvalidRequest("receipt", "a receipt (compact JWS) is required")
        if len(request.receipt) > MAX_RECEIPT_CHARS:
            raise InvalidRequest("receipt", f"longer than {MAX_RECEIPT_CHARS} characters")
        trust = await asyncio.to_thread(self.hub.certificates.trust.current)
        _, _, root = trust.require_signed()
        answer = (
            answer_from_json(json_format.MessageToDict(request.answer))
            if request.HasField("answer")
            else None
        )
        verdict = verify_receipt(request.receipt, PublicKey.from_jwk(root), answer)
        return verification_pb2.VerifyReceiptResponse(
            valid=verdict.valid,
            checks=[
                verification_pb2.ReceiptCheck(name=c.name, passed=c.passed, detail=c.detail)
                for c in verdict.checks
            ],
            claims_json=canonical_json(dict(verdict.claims)).decode() if verdict.claims else "",
        )

    def _department_keys(self) -> str:
        """The adapters' department keys signed by the root key ("" when none)."""
        keys = {
            a.adapter_id: list(a.spec.department_keys)
            for a in self.hub.adapters
            if a.spec.department_keys
        }
        manager = self.hub.certificates.keys
        root = manager.root()
        if not keys or root is None:
            return ""
        return sign_department_keys(keys, manager.open(root), datetime.now(UTC))

    async def verify(self, presented: Presented) -> OnlineVerdict:
        """Verify what was presented, online, and count the outcome (see `_verify`)."""
        result = await self._verify(presented)
        CERTIFICATES_VERIFIED.labels(valid=str(result.verdict.valid).lower()).inc()
        return result

    async def verify_copy(self, token: str, certificate_token: str | None) -> OnlineCopyVerdict:
        """Verify a usage copy online and count the outcome; when the certificate came
        from the store, its holder is told who looked (as for a lookup by id).

        Raises:
            FailedPrecondition: the hub has no root key.
            StoreError: the database failed.
        """
        trust = await self._trust()
        use = self.hub.certificates.use
        result = await asyncio.to_thread(use.verify_usage_copy, token, certificate_token, trust)
        CERTIFICATES_VERIFIED.labels(valid=str(result.verdict.valid).lower()).inc()
        if result.stored is not None and certificate_token is None:
            await self._audit_lookup(result.stored, result.verdict.valid)
        return result

    async def verify_any(self, presented: Presented) -> OnlineVerdict | OnlineCopyVerdict:
        """`verify_copy` for a usage copy, else `verify`."""
        copy = usage_copy_of(presented)
        if copy is not None:
            return await self.verify_copy(copy, None)
        return await self.verify(presented)

    async def _verify(self, presented: Presented) -> OnlineVerdict:
        """Verify what was presented, online.

        Raises:
            InvalidRequest: a malformed id or QR text.
            NotFound: an id (or QR link) this hub holds no certificate for.
            StoreError: the database failed.
        """
        trust = await self._trust()
        quick = quick_verdict(presented, trust)  # a good token needs no store: stay on the loop
        if quick is not None:
            return quick
        verified = await asyncio.to_thread(
            verify_presented, self.hub.certificates, presented, trust
        )
        if verified.looked_up is not None:
            await self._audit_lookup(verified.looked_up, verified.result.verdict.valid)
        return verified.result

    async def _audit_lookup(self, found: StoredCertificate, valid: bool) -> None:
        """Looking a certificate up by id shows its content: its holder is told who did."""
        certificate = found.certificate
        audit = self.hub.audit
        await audit.record(
            audit.entry(
                current_caller(),
                "CERT_VERIFY",
                "OK",
                subject=parse_key(certificate.holder_kind, certificate.holder_value),
                certificate_id=found.id,
                record_types=[f"certificate.{certificate.type_code}"],
                valid=valid,
            )
        )

    async def _trust(self) -> PublishedTrust:
        publisher = self.hub.certificates.trust
        cached = publisher.cached()
        return cached if cached is not None else await asyncio.to_thread(publisher.current)
