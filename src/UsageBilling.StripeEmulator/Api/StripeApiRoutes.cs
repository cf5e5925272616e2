using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.State;

namespace UsageBilling.StripeEmulator.Api;

/// <summary>
/// The Stripe API's routes: one endpoint per Stripe route under <c>MapGroup("/v1")</c> and <c>MapGroup("/v2")</c>,
/// with the filters of <see cref="StripeApiFilters"/> in this order — response (errors, lost answers), secret key,
/// faults, account rate limit, form body; then per route the meter-event limits, the Idempotency-Key replay and the
/// execution (concurrency rule, delay, result). Any other URL outside <c>/_emulator</c> passes the same first filters
/// and is Stripe's 404 <c>Unrecognized request URL</c>; the v2 meter routes take JSON and their own auth and limits.
/// </summary>
internal static class StripeApiRoutes
{
    public static void MapStripeApi(this IEndpointRouteBuilder app, StripeApiHandler api)
    {
        var b = api.Backend;

        // The v2 meter event routes: JSON bodies, session-token auth for the stream, no Idempotency-Key.
        var meterV2 = app.MapGroup(string.Empty).AddEndpointFilter(new StripeApiFilters.Response(api, formBodies: false));
        meterV2.MapPost(StripeApiHandler.SessionPath, (Func<HttpContext, Task<ApiResponse>>)api.CreateMeterEventSessionAsync)
            .AddEndpointFilter(new StripeApiFilters.SecretKey())
            .AddEndpointFilter(new StripeApiFilters.Faults(api, v2: true))
            .AddEndpointFilter(new StripeApiFilters.Rate(api.Runtime.TryTakeRateToken, () => StripeApiHandler.RateLimitedV2("global-rate", "rate_limited")));
        meterV2.MapPost(StripeApiHandler.StreamPath, (Func<HttpContext, Task<ApiResponse>>)api.StreamMeterEventsAsync)
            .AddEndpointFilter(new StripeApiFilters.SessionToken(api))
            .AddEndpointFilter(new StripeApiFilters.Faults(api, v2: true))
            .AddEndpointFilter(new StripeApiFilters.Rate(api.Runtime.TryTakeStreamToken, () => StripeApiHandler.RateLimitedV2("endpoint-rate", "meter_event_stream_rate_limited")));
        meterV2.Map(StripeApiHandler.V2MeterPathPrefix + "{suffix}/{**rest}", StripeApiHandler.UnrecognizedV2Meter);

        // Everything else: secret key, faults, the account's rate limit, the form body.
        var api1 = app.MapGroup(string.Empty)
            .AddEndpointFilter(new StripeApiFilters.Response(api, formBodies: true))
            .AddEndpointFilter(new StripeApiFilters.SecretKey())
            .AddEndpointFilter(new StripeApiFilters.Faults(api, v2: false))
            .AddEndpointFilter(StripeApiFilters.GlobalRate(api))
            .AddEndpointFilter(new StripeApiFilters.Form(api));

        var v1 = api1.MapGroup("/v1");
        Route(v1.MapPost("/billing/meter_events", (HttpContext c) => b.Meters.CreateMeterEvent(P(c))), meterEvent: true);
        Route(v1.MapPost("/billing/meter_event_adjustments", (HttpContext c) => b.Meters.CreateAdjustment(P(c))));
        Route(v1.MapPost("/billing/meters", (HttpContext c) => b.Meters.Create(P(c))));
        Route(v1.MapGet("/billing/meters", (HttpContext c) => b.Meters.List(P(c))));
        Route(v1.MapGet("/billing/meters/{id}", (string id, HttpContext c) => b.Meters.Get(id, P(c))));
        Route(v1.MapPost("/billing/meters/{id}", (string id, HttpContext c) => b.Meters.Update(id, P(c))));
        Route(v1.MapPost("/billing/meters/{id}/deactivate", (string id, HttpContext c) => b.Meters.SetStatus(id, P(c), active: false)));
        Route(v1.MapPost("/billing/meters/{id}/reactivate", (string id, HttpContext c) => b.Meters.SetStatus(id, P(c), active: true)));
        Route(v1.MapGet("/billing/meters/{id}/event_summaries", (string id, HttpContext c) => b.Meters.EventSummaries(id, P(c))));

        Route(v1.MapPost("/customers", (HttpContext c) => b.Customers.Create(P(c))));
        Route(v1.MapGet("/customers", (HttpContext c) => b.Customers.List(P(c))));
        Route(v1.MapGet("/customers/{id}", (string id, HttpContext c) => b.Customers.Get(id, P(c))));
        Route(v1.MapPost("/customers/{id}", (string id, HttpContext c) => b.Customers.Update(id, P(c))));
        Route(v1.MapDelete("/customers/{id}", (string id, HttpContext c) => b.Customers.Delete(id, P(c))));

        Route(v1.MapPost("/products", (HttpContext c) => b.Catalog.CreateProduct(P(c))));
        Route(v1.MapGet("/products", (HttpContext c) => b.Catalog.ListProducts(P(c))));
        Route(v1.MapGet("/products/{id}", (string id, HttpContext c) => b.Catalog.GetProduct(id, P(c))));
        Route(v1.MapPost("/products/{id}", (string id, HttpContext c) => b.Catalog.UpdateProduct(id, P(c))));

        Route(v1.MapPost("/prices", (HttpContext c) => b.Catalog.CreatePrice(P(c))));
        Route(v1.MapGet("/prices", (HttpContext c) => b.Catalog.ListPrices(P(c))));
        Route(v1.MapGet("/prices/{id}", (string id, HttpContext c) => b.Catalog.GetPrice(id, P(c))));
        Route(v1.MapPost("/prices/{id}", (string id, HttpContext c) => b.Catalog.UpdatePrice(id, P(c))));

        Route(v1.MapPost("/subscriptions", (HttpContext c) => b.Billing.CreateSubscription(P(c))));
        Route(v1.MapGet("/subscriptions", (HttpContext c) => b.Billing.ListSubscriptions(P(c))));
        Route(v1.MapGet("/subscriptions/{id}", (string id, HttpContext c) => b.Billing.GetSubscription(id, P(c))));
        Route(v1.MapPost("/subscriptions/{id}", (string id, HttpContext c) => b.Billing.UpdateSubscription(id, P(c))));
        Route(v1.MapDelete("/subscriptions/{id}", (string id, HttpContext c) => b.Billing.CancelSubscription(id, P(c))));

        // Answers name the emulator root as the client called it (the Checkout page URL).
        Route(v1.MapPost("/checkout/sessions", (HttpContext c) => b.Checkout.CreateCheckoutSession(P(c), $"{c.Request.Scheme}://{c.Request.Host}")));
        Route(v1.MapGet("/checkout/sessions", (HttpContext c) => b.Checkout.ListCheckoutSessions(P(c))));
        Route(v1.MapGet("/checkout/sessions/{id}", (string id, HttpContext c) => b.Checkout.GetCheckoutSession(id, P(c))));
        Route(v1.MapGet("/checkout/sessions/{id}/line_items", (string id, HttpContext c) => b.Checkout.ListCheckoutLineItems(id, P(c))));
        Route(v1.MapPost("/checkout/sessions/{id}/expire", (string id, HttpContext c) => b.Checkout.ExpireCheckoutSession(id, P(c))));

        Route(v1.MapGet("/invoices", (HttpContext c) => b.Billing.ListInvoices(P(c))));
        Route(v1.MapGet("/invoices/{id}", (string id, HttpContext c) => b.Billing.GetInvoice(id, P(c))));

        Route(v1.MapPost("/webhook_endpoints", (HttpContext c) => b.Webhooks.CreateEndpoint(P(c))));
        Route(v1.MapGet("/webhook_endpoints", (HttpContext c) => b.Webhooks.ListEndpoints(P(c))));
        Route(v1.MapGet("/webhook_endpoints/{id}", (string id, HttpContext c) => b.Webhooks.GetEndpoint(id, P(c))));
        Route(v1.MapPost("/webhook_endpoints/{id}", (string id, HttpContext c) => b.Webhooks.UpdateEndpoint(id, P(c))));
        Route(v1.MapDelete("/webhook_endpoints/{id}", (string id, HttpContext c) => b.Webhooks.DeleteEndpoint(id, P(c))));

        Route(v1.MapGet("/events", (HttpContext c) => b.Webhooks.ListEvents(P(c))));
        Route(v1.MapGet("/events/{id}", (string id, HttpContext c) =>
        {
            P(c).AllowOnly();
            return b.Webhooks.GetEvent(id);
        }));

        var v2 = api1.MapGroup("/v2");
        Route(v2.MapGet("/core/events/{id}", (string id, HttpContext c) =>
        {
            P(c).AllowOnly();
            return b.Webhooks.GetV2Event(id);
        }));

        // Any other method or URL under /v1 and /v2: authenticated, faulted and rate limited like the rest, then a 404.
        // (Other roots outside the admin API reach the same endpoint through UseUnrecognizedUrls.)
        api1.Map("/v1/{**rest}", Unrecognized).WithMetadata(UnrecognizedUrl.Instance);
        api1.Map("/v2/{**rest}", Unrecognized).WithMetadata(UnrecognizedUrl.Instance);

        void Route(RouteHandlerBuilder route, bool meterEvent = false)
        {
            if (meterEvent)
            {
                route.AddEndpointFilter(new StripeApiFilters.MeterEventLimits(api));
            }

            route.AddEndpointFilter(new StripeApiFilters.Idempotent(api))
                .AddEndpointFilter(new StripeApiFilters.Execute(api, meterEvent));
        }
    }

    private static Params P(HttpContext ctx) => StripeCall.Of(ctx).Params;

    /// <summary>
    /// After routing: a request outside <c>/v1</c>, <c>/v2</c> and the admin API that matched nothing goes to the
    /// unrecognized-URL endpoint (401 without a key, else Stripe's 404). A root catch-all route would do the same but
    /// would also swallow the admin API's 405s, since routing decides those before route constraints run.
    /// </summary>
    public static IApplicationBuilder UseUnrecognizedUrls(this IApplicationBuilder app, EndpointDataSource endpoints)
    {
        Endpoint? unrecognized = null;
        return app.Use((ctx, next) =>
        {
            if (ctx.GetEndpoint() is null && !ctx.Request.Path.StartsWithSegments(AdminEndpoints.Prefix, StringComparison.Ordinal))
            {
                unrecognized ??= endpoints.Endpoints.First(e => e.Metadata.GetMetadata<UnrecognizedUrl>() is not null);
                ctx.SetEndpoint(unrecognized);
            }

            return next(ctx);
        });
    }

    private static JsonObject Unrecognized(HttpContext ctx) =>
        throw new StripeApiException(404, "invalid_request_error", null,
            $"Unrecognized request URL ({ctx.Request.Method}: {ctx.Request.Path.Value}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            null, "unrecognized_url");

    /// <summary>Marks the endpoint that answers Stripe's 404 for unknown URLs.</summary>
    private sealed class UnrecognizedUrl
    {
        public static readonly UnrecognizedUrl Instance = new();
    }
}
