using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Stripe;

namespace UsageBilling;

/// <summary>
/// Wires the billing account into an ASP.NET Core app:
/// <c>AddUsageBilling(...).UseSqlite(...).UseStripe(...).AddFlusher(...).AddAspNetCore()</c>, then
/// <c>app.MapUsageBillingWebhooks("/webhooks/stripe")</c>.
/// </summary>
public static class UsageBillingAspNetCoreExtensions
{
    /// <summary>Adds <see cref="IBillingAccounts"/>, the webhook endpoint's services and <see cref="StripeWebhookRegistration"/>, configured in code.</summary>
    /// <param name="builder">The UsageBilling builder (after <c>UseStripe</c>).</param>
    /// <param name="configure">Adjusts <see cref="BillingAccountOptions"/>.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder AddAspNetCore(this UsageBillingBuilder builder, Action<BillingAccountOptions>? configure = null) =>
        builder.AddAspNetCoreCore(o => o.Configure(x => configure?.Invoke(x)));

    /// <summary>Adds the billing account bound to a configuration section (usually <c>UsageBilling:Billing</c>).</summary>
    /// <param name="builder">The UsageBilling builder (after <c>UseStripe</c>).</param>
    /// <param name="section">The section.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder AddAspNetCore(this UsageBillingBuilder builder, IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(section);
        return builder.AddAspNetCoreCore(o => o.Bind(section));
    }

    private static UsageBillingBuilder AddAspNetCoreCore(this UsageBillingBuilder builder, Action<OptionsBuilder<BillingAccountOptions>> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        configure(services.AddOptionsWithValidateOnStart<BillingAccountOptions>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BillingAccountOptions>, BillingAccountOptionsValidator>());
        builder.AddStripeProvisioner();
        services.TryAddSingleton<PlanPrices>();
        services.TryAddSingleton<StripeWebhookSecret>();
        services.TryAddSingleton<BillingAccounts>();
        services.TryAddSingleton<IBillingAccounts>(sp => sp.GetRequiredService<BillingAccounts>());
        services.TryAddSingleton<StripeWebhookProcessor>();
        services.AddOptions<UsageIngestionOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<UsageIngestionOptions>, UsageIngestionOptionsValidator>());
        services.TryAddSingleton<UsageIngestionEndpoint>();
        services.TryAddSingleton(sp => new StripeWebhookRegistration(
            sp.GetRequiredService<StripeClient>(), sp.GetRequiredService<StripeWebhookSecret>(), sp.GetRequiredService<ILogger<StripeWebhookRegistration>>()));
        return builder;
    }

    /// <summary>
    /// Maps Stripe's webhook endpoint: signature checked (tolerance from <see cref="BillingAccountOptions.WebhookTolerance"/>),
    /// the body capped while it is read, each event applied once and in any delivery order.
    /// </summary>
    /// <param name="endpoints">The app's routes.</param>
    /// <param name="pattern">The path, e.g. <c>/webhooks/stripe</c>.</param>
    /// <returns>The endpoint, for further conventions.</returns>
    public static RouteHandlerBuilder MapUsageBillingWebhooks(this IEndpointRouteBuilder endpoints, string pattern = "/webhooks/stripe")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        return endpoints.MapPost(pattern, (HttpRequest request, StripeWebhookProcessor processor, CancellationToken ct) => processor.HandleAsync(request, ct))
            .DisableAntiforgery()
            .AllowAnonymous()
            .WithName("UsageBillingStripeWebhooks");
    }

    /// <summary>
    /// Maps the usage ingestion endpoint for other services: <c>POST</c> a JSON body
    /// <c>{"events":[{"account_id"|"customer_id","meter","quantity","idempotency_key","occurred_at"}]}</c> (1–1000 events)
    /// with <c>Authorization: Bearer &lt;API key&gt;</c> (<see cref="IUsageApiKeys"/>). Answers one result per event
    /// (<c>recorded</c>, <c>duplicate</c>, <c>rejected</c> with a code and reason), ProblemDetails 400 for a bad body,
    /// 401 without a live key, 403 for an account the key is not scoped to, 413 over <see cref="UsageIngestionOptions.MaxBodyBytes"/>,
    /// 429 over the key's rate. Events are recorded through <see cref="IUsageRecorder"/>, spend-control limits included.
    /// </summary>
    /// <param name="endpoints">The app's routes.</param>
    /// <param name="pattern">The path; default <c>/api/v1/usage</c>.</param>
    /// <returns>The endpoint, for further conventions.</returns>
    public static RouteHandlerBuilder MapUsageBillingIngestion(this IEndpointRouteBuilder endpoints, string pattern = "/api/v1/usage")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        return endpoints.MapPost(pattern, (HttpContext http, UsageIngestionEndpoint endpoint, CancellationToken ct) => endpoint.HandleAsync(http, ct))
            .DisableAntiforgery()
            .AllowAnonymous()
            .WithName("UsageBillingIngestion");
    }
}
