using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;

namespace UsageBilling.StripeEmulator.Admin;

/// <summary>The HTTP admin API under <c>/_emulator</c>, mirroring <see cref="IStripeEmulatorAdmin"/> for tests in another process.</summary>
internal static class AdminEndpoints
{
    public const string Prefix = "/_emulator";

    /// <summary>The header that carries the admin token when <c>Authorization</c> is taken by something else.</summary>
    public const string TokenHeader = "X-Emulator-Admin-Token";

    public static IEndpointRouteBuilder MapEmulatorAdmin(this IEndpointRouteBuilder app, EmulatorAdmin admin, string adminToken, Func<CancellationToken, Task> save)
    {
        var root = app.MapGroup(Prefix);
        root.AddEndpointFilter(async (ctx, next) =>
        {
            // A web page open in the developer's browser must not drive the emulator (reset, save, faults):
            // a browser names the page's origin on cross-origin requests, even on "simple" text/plain POSTs.
            if (IsCrossOrigin(ctx.HttpContext.Request))
            {
                return TypedResults.Problem("Cross-origin requests to the emulator's admin API are refused.", statusCode: StatusCodes.Status403Forbidden);
            }

            try
            {
                return await next(ctx);
            }
            catch (ArgumentException ex)
            {
                return TypedResults.Problem(ex.Message, statusCode: StatusCodes.Status400BadRequest);
            }
        });

        // Open without the token: the health probe, and the hosted Checkout and invoice pages a customer's browser is sent to.
        root.MapGet("/health", () => TypedResults.Ok(new { ok = true }));
        MapCheckoutPage(root, admin);
        root.MapGet("/invoices/{id}", (string id) => InvoicePage.Render(admin.Backend.Billing.InvoicePage(id), id));

        // Everything else drives or reads the emulator's state: only a holder of the token printed at start may.
        var expected = Encoding.UTF8.GetBytes(adminToken);
        var g = root.MapGroup("");
        g.AddEndpointFilter(async (ctx, next) => HasToken(ctx.HttpContext.Request, expected)
            ? await next(ctx)
            : TypedResults.Problem(
                $"The emulator's admin API requires its admin token (printed at start) as 'Authorization: Bearer <token>' or '{TokenHeader}'.",
                statusCode: StatusCodes.Status401Unauthorized));

        g.MapPost("/faults", async Task<Ok<FaultCreated>> (FaultSpec fault, CancellationToken ct) =>
            TypedResults.Ok(new FaultCreated(await admin.InjectFaultAsync(fault, ct))));
        g.MapGet("/faults", async (CancellationToken ct) => TypedResults.Ok(await admin.GetFaultsAsync(ct)));
        g.MapDelete("/faults", async (CancellationToken ct) =>
        {
            await admin.ClearFaultsAsync(ct);
            return TypedResults.NoContent();
        });

        g.MapPut("/rate_limit", async (RateLimitRequest body, CancellationToken ct) =>
        {
            await admin.SetRateLimitAsync(body.RequestsPerSecond, ct);
            return TypedResults.NoContent();
        });
        g.MapPut("/concurrency", async (ConcurrencyRequest body, CancellationToken ct) =>
        {
            await admin.SetConcurrencyEnforcementAsync(body.Enforce, ct);
            return TypedResults.NoContent();
        });

        g.MapGet("/clock", async (CancellationToken ct) => Clock(await admin.GetNowAsync(ct)));
        g.MapPost("/clock/advance", async (AdvanceClockRequest body, CancellationToken ct) =>
            Clock(await admin.AdvanceClockAsync(TimeSpan.FromSeconds(body.Seconds), ct)));
        g.MapPost("/clock/set", async (SetClockRequest body, CancellationToken ct) =>
            Clock(await admin.SetClockAsync(DateTimeOffset.FromUnixTimeSeconds(body.Unix), ct)));

        g.MapGet("/meter_events", async (string? customer, string? event_name, CancellationToken ct) =>
            TypedResults.Ok(await admin.GetMeterEventsAsync(customer, event_name, ct)));
        g.MapGet("/totals", async Task<Results<Ok<TotalResponse>, ProblemHttpResult>> (string? customer, string? meter, long? start, long? end, CancellationToken ct) =>
        {
            if (string.IsNullOrEmpty(customer) || string.IsNullOrEmpty(meter) || start is null || end is null)
            {
                return TypedResults.Problem("customer, meter, start and end (unix seconds) are required.", statusCode: StatusCodes.Status400BadRequest);
            }

            var value = await admin.GetMeterTotalAsync(customer, meter, DateTimeOffset.FromUnixTimeSeconds(start.Value), DateTimeOffset.FromUnixTimeSeconds(end.Value), ct);
            return TypedResults.Ok(new TotalResponse(value));
        });
        g.MapGet("/rejections", async (CancellationToken ct) => TypedResults.Ok(await admin.GetRejectionCountsAsync(ct)));
        g.MapGet("/meter_event_requests", async (CancellationToken ct) => TypedResults.Ok(await admin.GetMeterEventRequestsAsync(ct)));

        g.MapPost("/webhook_endpoints", async (AddWebhookEndpointRequest body, CancellationToken ct) =>
        {
            if (!Uri.TryCreate(body.Url, UriKind.Absolute, out var url))
            {
                throw new ArgumentException($"Invalid URL '{body.Url}'.");
            }

            return TypedResults.Ok(await admin.AddWebhookEndpointAsync(url, body.EnabledEvents, ct));
        });
        g.MapGet("/webhook_deliveries", async (CancellationToken ct) => TypedResults.Ok(await admin.GetWebhookDeliveriesAsync(ct)));

        g.MapPost("/checkout_sessions/{id}/complete", async Task<Results<Ok<CheckoutCompletion>, ProblemHttpResult>> (string id, CancellationToken ct) =>
        {
            try
            {
                return TypedResults.Ok(await admin.CompleteCheckoutSessionAsync(id, ct));
            }
            catch (KeyNotFoundException ex)
            {
                return TypedResults.Problem(ex.Message, statusCode: StatusCodes.Status404NotFound);
            }
            catch (InvalidOperationException ex)
            {
                return TypedResults.Problem(ex.Message, statusCode: StatusCodes.Status400BadRequest);
            }
        });

        g.MapPost("/meter_event_sessions/expire", async (CancellationToken ct) =>
            TypedResults.Ok(new ExpiredSessionsResponse(await admin.ExpireMeterEventSessionsAsync(ct))));
        g.MapPost("/reset", async (CancellationToken ct) =>
        {
            await admin.ResetAsync(ct);
            return TypedResults.NoContent();
        });
        g.MapPost("/save", async (CancellationToken ct) =>
        {
            await save(ct);
            return TypedResults.NoContent();
        });
        return app;
    }

    private static void MapCheckoutPage(RouteGroupBuilder root, EmulatorAdmin admin)
    {
        // The hosted payment page a Checkout Session's url points at: GET shows it, POST is the "Pay" button.
        root.MapGet("/checkout/{id}", (string id) => CheckoutPage.Render(admin.Backend.Checkout.CheckoutPage(id), id));
        root.MapPost("/checkout/{id}", (string id, HttpContext ctx) =>
        {
            try
            {
                var completion = admin.Backend.Checkout.CompleteCheckoutSession(id);
                ctx.Response.Headers.Location = completion.RedirectUrl.OriginalString;
                return Results.StatusCode(StatusCodes.Status303SeeOther);
            }
            catch (Api.StripeApiException ex)
            {
                return CheckoutPage.Error(ex.Status, ex.Message);
            }
        });
    }

    /// <summary>Whether the request carries the admin token (compared in constant time).</summary>
    private static bool HasToken(HttpRequest request, byte[] expected)
    {
        var given = request.Headers[TokenHeader].ToString();
        if (string.IsNullOrEmpty(given))
        {
            var authorization = request.Headers.Authorization.ToString();
            given = authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? authorization["Bearer ".Length..].Trim() : "";
        }

        return given.Length > 0 && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), expected);
    }

    private static Ok<ClockResponse> Clock(DateTimeOffset now) => TypedResults.Ok(new ClockResponse(now, now.ToUnixTimeSeconds()));

    /// <summary>
    /// Whether a browser sent a state-changing request from a page of another origin (scheme, host and port).
    /// Reads are not checked for their origin: a cross-origin page cannot see their answers (no CORS headers), and
    /// the Checkout page is reached by navigation from the app.
    /// </summary>
    internal static bool IsCrossOrigin(HttpRequest request)
    {
        if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method))
        {
            return false;
        }

        var origin = request.Headers.Origin.ToString();
        if (string.IsNullOrEmpty(origin))
        {
            return string.Equals(request.Headers["Sec-Fetch-Site"].ToString(), "cross-site", StringComparison.OrdinalIgnoreCase);
        }

        return !Uri.TryCreate(origin, UriKind.Absolute, out var from)
            || !string.Equals(from.Scheme, request.Scheme, StringComparison.OrdinalIgnoreCase)
            || !string.Equals(from.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase);
    }
}
