"""The embedded processor's own endpoint: Stripe.js's part, confirming a setup intent."""

from fastapi import Request

from zoopay.api.openapi import errors
from zoopay.api.routing import json_router
from zoopay.errors import NotFound
from zoopay.payments.flows import processor_refusal
from zoopay.payments.schemas import ConfirmSetupIntent, PaymentMethod
from zoopay.processors.base import ProcessorError
from zoopay.processors.embedded import EmbeddedProcessor

router = json_router(tags=["processor"])


def embedded(request: Request) -> EmbeddedProcessor:
    processor = request.app.state.processor
    if not isinstance(processor, EmbeddedProcessor):
        raise NotFound("this server's processor confirms setup intents itself (Stripe.js)")
    return processor


@router.post(
    "/processor/setup-intents/confirm",
    response_model=PaymentMethod,
    responses=errors(402, 404, 409, 503),
)
async def confirm_setup_intent(body: ConfirmSetupIntent, request: Request) -> PaymentMethod:
    """Confirm a setup intent with a Stripe test token, as Stripe.js would (extension; no
    token: the client secret is the credential, and works once). Answers the card attached;
    a declined card is a 402 `card_declined` and attaches nothing; an unknown secret is a 404,
    a used one a 409, a token that is not a test card a 400."""
    try:
        card = await embedded(request).confirm_setup_intent(body.client_secret, body.payment_method)
    except ProcessorError as error:
        raise processor_refusal(error) from None
    return PaymentMethod.of(card)
