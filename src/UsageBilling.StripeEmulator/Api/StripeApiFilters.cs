using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Api;

/// <summary>What the filters learn about one Stripe API request and hand on to the next filter and the handler.</summary>
internal sealed class StripeCall
{
    /// <summary>The API key the request authenticated with (for a stream request, the key its session was created with).</summary>
    public string ApiKey { get; set; } = string.Empty;

    /// <summary>The injected fault this request took, if any.</summary>
    public FaultSpec? Fault { get; set; }

    /// <summary>The query string and form body, parsed (v1 routes).</summary>
    public Params Params { get; set; } = null!;

    /// <summary>The form body as sent, for the idempotency fingerprint.</summary>
    public string RawBody { get; set; } = string.Empty;

    public static StripeCall Of(HttpContext ctx) =>
        ctx.Features.Get<StripeCall>() ?? throw new InvalidOperationException("The Stripe API's response filter did not run.");
}

/// <summary>An answer already decided elsewhere: the connection was aborted (a lost answer) or the client went away.</summary>
internal sealed class NoAnswer : IResult
{
    public static readonly NoAnswer Instance = new();

    public Task ExecuteAsync(HttpContext httpContext) => Task.CompletedTask;
}

/// <summary>
/// The Stripe API's endpoint filters, outermost first: <see cref="Response"/> (Stripe-shaped errors, lost answers),
/// <see cref="SecretKey"/> or <see cref="SessionToken"/> (auth), <see cref="Faults"/> (injected 429/500/lost
/// answer), <see cref="GlobalRate"/> and the endpoints' own rate limits, <see cref="Form"/> (due billing work, then
/// the query and form body), <see cref="MeterEventLimits"/>, <see cref="Idempotent"/> (Idempotency-Key replay) and
/// <see cref="Execute"/> (the per customer·meter concurrency rule, injected delays, the handler's result or error).
/// </summary>
internal static class StripeApiFilters
{
    /// <summary>Outermost: turns every failure into Stripe's error body, and aborts the connection for a lost-answer fault.</summary>
    /// <param name="api">The emulator's parts.</param>
    /// <param name="formBodies">v1 routes: a malformed request body is a 400 (the v2 meter routes read JSON themselves).</param>
    public sealed class Response(StripeApiHandler api, bool formBodies) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var ctx = context.HttpContext;
            var call = new StripeCall();
            ctx.Features.Set(call);
            object? response;
            try
            {
                response = await next(context);
            }
            catch (StripeApiException ex)
            {
                api.Runtime.Reject(ex.RejectionReason);
                response = StripeApiHandler.Error(ex);
            }
            catch (BadHttpRequestException ex) when (formBodies)
            {
                api.Runtime.Reject("invalid_request_body");
                response = StripeApiHandler.Error(StripeApiException.Invalid($"Invalid request body: {ex.Message}"));
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                return NoAnswer.Instance;
            }
            catch (Exception ex)
            {
                StripeApiHandler.LogUnexpected(api.Logger, ex, ctx.Request.Method, ctx.Request.Path.Value ?? "/");
                response = StripeApiHandler.Error(new StripeApiException(500, "api_error", null, "An unknown error occurred", null, "internal_error"));
            }

            if (call.Fault?.Kind == FaultKind.DropAfterProcessing)
            {
                // The effect happened; the client must see a network error, not an answer.
                ctx.Abort();
                return NoAnswer.Instance;
            }

            return response;
        }
    }

    /// <summary>A test-mode secret key (Bearer or Basic), or the 401 Stripe answers.</summary>
    public sealed class SecretKey : IEndpointFilter
    {
        public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            StripeCall.Of(context.HttpContext).ApiKey = StripeApiHandler.Authenticate(context.HttpContext.Request);
            return next(context);
        }
    }

    /// <summary>A live meter event session token (the stream), or the 401 Stripe answers.</summary>
    public sealed class SessionToken(StripeApiHandler api) : IEndpointFilter
    {
        public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            StripeCall.Of(context.HttpContext).ApiKey = api.Backend.Meters.AuthenticateSession(StripeApiHandler.BearerToken(context.HttpContext.Request)).ApiKey;
            return next(context);
        }
    }

    /// <summary>
    /// Takes the first matching admin fault rule: an injected 429 or 500 answers here; a delay waits in
    /// <see cref="Execute"/> (inside the idempotency claim); a lost answer is carried out by <see cref="Response"/>.
    /// </summary>
    /// <param name="api">The emulator's parts.</param>
    /// <param name="v2">The v2 meter routes: their 429 has type <c>rate_limit</c>, and a stored 500 is not stored (no Idempotency-Key there).</param>
    public sealed class Faults(StripeApiHandler api, bool v2) : IEndpointFilter
    {
        public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var request = context.HttpContext.Request;
            var fault = api.Runtime.TakeFault(request.Method, request.Path.Value ?? "/");
            StripeCall.Of(context.HttpContext).Fault = fault;
            switch (fault?.Kind)
            {
                case FaultKind.RateLimited:
                    throw v2
                        ? StripeApiHandler.RateLimitedV2(fault.RateLimitedReason, "injected_rate_limit")
                        : StripeApiHandler.RateLimited(fault.RateLimitedReason, "injected_rate_limit");
                case FaultKind.ServerError when v2 || !fault.StoreForIdempotency:
                    throw StripeApiHandler.ServerError("injected_server_error");
            }

            return next(context);
        }
    }

    /// <summary>A rate limit: a token from <paramref name="take"/>, or the 429 <paramref name="refusal"/> builds.</summary>
    public sealed class Rate(Func<bool> take, Func<StripeApiException> refusal) : IEndpointFilter
    {
        public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next) =>
            take() ? next(context) : throw refusal();
    }

    /// <summary>The account-wide request rate (v1 routes).</summary>
    public static Rate GlobalRate(StripeApiHandler api) =>
        new(api.Runtime.TryTakeRateToken, () => StripeApiHandler.RateLimited("global-rate", "rate_limited"));

    /// <summary>Runs the billing work that fell due, then parses the query string and form body into <see cref="StripeCall.Params"/>.</summary>
    public sealed class Form(StripeApiHandler api) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            api.Backend.ProcessDue(api.Backend.Now);
            var call = StripeCall.Of(context.HttpContext);
            (call.Params, call.RawBody) = await api.ReadParamsAsync(context.HttpContext);
            return await next(context);
        }
    }

    /// <summary><c>POST /v1/billing/meter_events</c> only: its own rate limit, and the count of calls per identifier.</summary>
    public sealed class MeterEventLimits(StripeApiHandler api) : IEndpointFilter
    {
        public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            if (!api.Runtime.TryTakeMeterEventToken())
            {
                throw StripeApiHandler.RateLimited("endpoint-rate", "meter_event_rate_limited");
            }

            var call = StripeCall.Of(context.HttpContext);
            if (call.Params.Node.Child("identifier")?.Value is { } identifier)
            {
                api.Runtime.CountMeterEventRequest(identifier, call.ApiKey);
            }

            return next(context);
        }
    }

    /// <summary>
    /// A POST with an <c>Idempotency-Key</c>: the first request claims the key (per API key) and its answer is kept for
    /// the idempotency window (not 4xx validation errors); a repeat with the same parameters gets that answer replayed,
    /// with other parameters a 400, while the first is still running a 409.
    /// </summary>
    public sealed class Idempotent(StripeApiHandler api) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var request = context.HttpContext.Request;
            var key = request.Method == "POST" ? request.Headers["Idempotency-Key"].ToString() : string.Empty;
            if (key.Length == 0)
            {
                return await next(context);
            }

            if (key.Length > 255)
            {
                throw StripeApiException.Invalid("Idempotency-Key must be at most 255 characters long.", null, "idempotency_key_too_long");
            }

            var call = StripeCall.Of(context.HttpContext);
            var fingerprint = StripeApiHandler.Fingerprint(request.Method, request.Path.Value ?? "/", request.QueryString.Value, call.RawBody);
            var scoped = string.Concat(call.ApiKey, "\n", key);
            var window = (long)api.Runtime.Options.IdempotencyWindow.TotalSeconds;
            var (entry, isNew) = api.Idempotency.Begin(scoped, fingerprint, api.Backend.Now, window);
            if (!isNew)
            {
                if (entry.Fingerprint != fingerprint)
                {
                    throw new StripeApiException(400, "idempotency_error", null,
                        $"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.",
                        null, "idempotency_mismatch");
                }

                if (entry.Response is not { } stored)
                {
                    throw new StripeApiException(409, "idempotency_error", "idempotency_key_in_use",
                        $"There is currently another in-progress request using this Idempotency-Key ({key}). Try again later.",
                        null, "idempotency_in_progress");
                }

                return stored with { Headers = [.. stored.Headers, new("Idempotent-Replayed", "true"), new("Idempotency-Key", key)] };
            }

            ApiResponse response;
            try
            {
                if (call.Fault is { Kind: FaultKind.ServerError, StoreForIdempotency: true })
                {
                    api.Runtime.Reject("injected_server_error");
                    response = StripeApiHandler.Error(StripeApiHandler.ServerError("injected_server_error"));
                }
                else
                {
                    response = (ApiResponse)(await next(context))!;
                }
            }
            catch
            {
                api.Idempotency.Abandon(scoped, entry);
                throw;
            }

            // Stripe saves a result once the endpoint started executing; validation errors (4xx) are not saved.
            if (response.Status < 400 || response.Status >= 500)
            {
                entry.Response = response;
            }
            else
            {
                api.Idempotency.Abandon(scoped, entry);
            }

            return response with { Headers = [.. response.Headers, new("Idempotency-Key", key)] };
        }
    }

    /// <summary>
    /// Innermost: the per customer·meter concurrency rule (meter events, when enforced), an injected delay, then the
    /// handler; its <see cref="JsonObject"/> becomes the 200 answer and its <see cref="StripeApiException"/> the error.
    /// </summary>
    public sealed class Execute(StripeApiHandler api, bool meterEvent) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var call = StripeCall.Of(context.HttpContext);
            string? slot = null;
            if (meterEvent && api.Runtime.EnforceConcurrency && api.Backend.Meters.ConcurrencyKey(call.Params) is { } k)
            {
                if (!api.Runtime.TryEnter(k))
                {
                    throw new StripeApiException(429, "invalid_request_error", "rate_limit",
                        "Too many concurrent requests for this customer and meter: send one meter event per customer and meter at a time.",
                        null, "concurrency")
                    {
                        Headers = { new("Stripe-Rate-Limited-Reason", "resource-specific") },
                    };
                }

                slot = k;
            }

            try
            {
                if (call.Fault is { Kind: FaultKind.Delay, DelayMilliseconds: > 0 })
                {
                    await Task.Delay(call.Fault.DelayMilliseconds, context.HttpContext.RequestAborted);
                }

                try
                {
                    return StripeApiHandler.Ok((JsonObject)(await next(context))!);
                }
                catch (StripeApiException ex)
                {
                    api.Runtime.Reject(ex.RejectionReason);
                    return StripeApiHandler.Error(ex);
                }
            }
            finally
            {
                if (slot is not null)
                {
                    api.Runtime.Exit(slot);
                }
            }
        }
    }
}
