namespace UsageBilling.Web.Webhooks;

/// <summary>Maps <c>POST /webhooks/stripe</c>.</summary>
internal static class StripeWebhookEndpoints
{
    private const int MaxBodyBytes = 512 * 1024;

    public static void MapStripeWebhooks(this IEndpointRouteBuilder app)
    {
        app.MapPost("/webhooks/stripe", HandleAsync).DisableAntiforgery().AllowAnonymous();
    }

    private static async Task<IResult> HandleAsync(HttpRequest request, StripeWebhookHandler handler, CancellationToken ct)
    {
        if (request.ContentLength is > MaxBodyBytes)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large");
        }

        // The signature covers the exact bytes: read the raw body, never a re-serialized model.
        using var reader = new StreamReader(request.Body);
        var json = await reader.ReadToEndAsync(ct);
        var outcome = await handler.HandleAsync(json, request.Headers["Stripe-Signature"].ToString(), ct);
        return outcome switch
        {
            WebhookOutcome.Handled or WebhookOutcome.Duplicate or WebhookOutcome.Ignored => TypedResults.Ok(new { received = true, outcome = outcome.ToString().ToLowerInvariant() }),
            WebhookOutcome.BadSignature => TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Invalid Stripe signature", detail: "The Stripe-Signature header is missing, does not match, or its timestamp is outside the tolerance."),
            WebhookOutcome.Malformed => TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Not a Stripe event"),
            _ => TypedResults.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "Webhooks are not configured", detail: "Set Stripe:WebhookSecret."),
        };
    }
}
