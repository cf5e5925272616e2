using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Stripe;
using UsageBilling.Flushing;
using UsageBilling.Web.Billing;
using UsageBilling.Web.Data;
using UsageBilling.Web.Hosting;

namespace UsageBilling.Web.Webhooks;

/// <summary>How a webhook delivery was answered.</summary>
internal enum WebhookOutcome
{
    /// <summary>Handled now.</summary>
    Handled,

    /// <summary>Already handled earlier (same event id): nothing changed.</summary>
    Duplicate,

    /// <summary>A type this app does not handle: acknowledged, nothing changed.</summary>
    Ignored,

    /// <summary>Missing, malformed or wrong signature, or a timestamp outside the tolerance.</summary>
    BadSignature,

    /// <summary>No webhook secret is configured yet.</summary>
    NotConfigured,

    /// <summary>The body is not a Stripe event.</summary>
    Malformed,
}

/// <summary>
/// Verifies and applies Stripe webhook events. The event id is stored in the same transaction as
/// the changes it causes, so a redelivered event changes nothing.
/// </summary>
internal sealed partial class StripeWebhookHandler(
    AppDbContext db,
    WebhookSecretStore secrets,
    SubscriptionSync sync,
    IServiceProvider services,
    TimeProvider time,
    ILogger<StripeWebhookHandler> logger)
{
    /// <summary>Stripe's default signature tolerance.</summary>
    public const long ToleranceSeconds = 300;

    private static readonly HashSet<string> SubscriptionEvents = new(StringComparer.Ordinal)
    {
        "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    };

    private static readonly HashSet<string> InvoiceEvents = new(StringComparer.Ordinal) { "invoice.created", "invoice.finalized", "invoice.paid" };

    /// <summary>A customer paid on Stripe Checkout (<c>Billing:SubscribeWith=Checkout</c>).</summary>
    public const string CheckoutCompleted = "checkout.session.completed";

    private static IReadOnlySet<string> MeterErrorEvents => MeterErrorReportHandler.EventTypes;

    public async Task<WebhookOutcome> HandleAsync(string json, string? signature, CancellationToken ct)
    {
        if (secrets.Secret is not { } secret)
        {
            return WebhookOutcome.NotConfigured;
        }

        if (string.IsNullOrEmpty(signature))
        {
            return WebhookOutcome.BadSignature;
        }

        var now = time.GetUtcNow().ToUnixTimeSeconds();
        string id, type;
        bool thin;
        try
        {
            EventUtility.ValidateSignature(json, signature, secret, ToleranceSeconds, now);
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            id = root.GetProperty("id").GetString() ?? throw new JsonException("no id");
            type = root.GetProperty("type").GetString() ?? throw new JsonException("no type");
            thin = root.TryGetProperty("object", out var o) && o.GetString() == "v2.core.event";
        }
        catch (StripeException ex)
        {
            LogBadSignature(logger, ex.Message);
            return WebhookOutcome.BadSignature;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return WebhookOutcome.Malformed;
        }

        var known = SubscriptionEvents.Contains(type) || InvoiceEvents.Contains(type) || MeterErrorEvents.Contains(type) || type == CheckoutCompleted;
        if (!known)
        {
            LogIgnored(logger, type, id);
            return WebhookOutcome.Ignored;
        }

        // The event's changes and its id commit together. A concurrent writer of the same rows (the
        // same event delivered twice at once, or the app syncing the subscription it just created)
        // makes the save fail: re-read and apply again.
        for (var attempt = 1; ; attempt++)
        {
            if (await db.ProcessedWebhookEvents.AsNoTracking().AnyAsync(e => e.Id == id, ct))
            {
                return WebhookOutcome.Duplicate;
            }

            if (thin)
            {
                await HandleMeterErrorAsync(id, json, ct);
            }
            else
            {
                // Signature already checked; the API version of the payload need not match Stripe.net's pin for the few fields we read.
                var stripeEvent = EventUtility.ConstructEvent(json, signature, secret, ToleranceSeconds, now, throwOnApiVersionMismatch: false);
                if (SubscriptionEvents.Contains(type) && stripeEvent.Data.Object is Subscription subscription)
                {
                    await sync.ApplyAsync(subscription, ct);
                }
                else if (type == "invoice.created" && stripeEvent.Data.Object is Invoice invoice)
                {
                    await FlushCustomerAsync(invoice.CustomerId, ct);
                }
                else if (type == CheckoutCompleted && stripeEvent.Data.Object is global::Stripe.Checkout.Session session)
                {
                    // A failure (Stripe unreachable) throws: the delivery answers 500 and Stripe retries it.
                    await services.GetRequiredService<BillingAccounts>().ApplyCompletedCheckoutAsync(session, ct);
                }
            }

            db.ProcessedWebhookEvents.Add(new ProcessedWebhookEvent { Id = id, Type = type, ProcessedAt = time.GetUtcNow() });
            try
            {
                await db.SaveChangesAsync(ct);
                break;
            }
            catch (DbUpdateException) when (attempt < 3)
            {
                db.ChangeTracker.Clear();
            }
        }

        LogHandled(logger, type, id);
        return WebhookOutcome.Handled;
    }

    /// <summary>The invoice is being drafted: report this customer's usage now, inside Stripe's grace period.</summary>
    private async Task FlushCustomerAsync(string customerId, CancellationToken ct)
    {
        var userId = await db.BillingCustomers.Where(c => c.StripeCustomerId == customerId).Select(c => (Guid?)c.UserId).FirstOrDefaultAsync(ct);
        if (userId is null)
        {
            return;
        }

        if (services.GetService<IUsageFlusher>() is not { } flusher)
        {
            LogNoFlusher(logger, customerId);
            return;
        }

        // A failure throws: the delivery answers 500, the event is not stored and Stripe retries it.
        var result = await flusher.FlushCustomerAsync(userId.Value, ct);
        LogFlushed(logger, customerId, result.ReportsSent);
    }

    /// <summary>Stripe found reported meter events invalid after accepting them: the matching reports become dead with the reason.</summary>
    private async Task HandleMeterErrorAsync(string id, string json, CancellationToken ct)
    {
        var handler = services.GetRequiredService<MeterErrorReportHandler>();
        var changed = await handler.HandleAsync(await FullV2EventAsync(id, json, ct), ct);
        LogMeterErrors(logger, id, changed);
    }

    private async Task<string> FullV2EventAsync(string id, string json, CancellationToken ct)
    {
        using (var doc = JsonDocument.Parse(json))
        {
            if (doc.RootElement.TryGetProperty("data", out _))
            {
                return json;
            }
        }

        var stripe = services.GetRequiredService<StripeClient>();
        var response = await stripe.RawRequestAsync(HttpMethod.Get, $"/v2/core/events/{Uri.EscapeDataString(id)}", cancellationToken: ct);
        return response.Content;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rejected a webhook delivery: {Reason}")]
    private static partial void LogBadSignature(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Ignored webhook event {Type} ({EventId})")]
    private static partial void LogIgnored(ILogger logger, string type, string eventId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Handled webhook event {Type} ({EventId})")]
    private static partial void LogHandled(ILogger logger, string type, string eventId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "invoice.created for {CustomerId}, but no IUsageFlusher is registered: usage is reported on the flusher's next cycle only")]
    private static partial void LogNoFlusher(ILogger logger, string customerId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Flushed usage of {CustomerId} for its new invoice: {Sent} reports sent")]
    private static partial void LogFlushed(ILogger logger, string customerId, int sent);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Meter error report {EventId}: {Count} usage reports marked dead")]
    private static partial void LogMeterErrors(ILogger logger, string eventId, int count);
}
