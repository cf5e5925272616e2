using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Stripe;
using Stripe.Events;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>How a webhook delivery was answered.</summary>
internal enum WebhookOutcome
{
    /// <summary>Applied now.</summary>
    Handled,

    /// <summary>Applied earlier (same event id): nothing changed.</summary>
    Duplicate,

    /// <summary>A type UsageBilling does not handle: acknowledged, nothing changed.</summary>
    Ignored,
}

/// <summary>
/// Verifies and applies one Stripe webhook delivery. Subscription events are applied by reading the
/// subscription from Stripe, never from the payload, so any delivery order ends in Stripe's state; the
/// event id is stored with the changes it causes. Bad input is a <see cref="WebhookRejection"/>
/// (a 4xx), a failure to reach Stripe or the database a 503 that Stripe retries: never a 500.
/// </summary>
internal sealed partial class StripeWebhookProcessor(
    IBillingAccountStore store,
    BillingAccounts accounts,
    StripeWebhookSecret secret,
    StripeClient stripe,
    IServiceProvider services,
    IOptions<BillingAccountOptions> options,
    TimeProvider time,
    ILogger<StripeWebhookProcessor> logger)
{
    public async Task<IResult> HandleAsync(HttpRequest request, CancellationToken ct)
    {
        try
        {
            var outcome = await ProcessAsync(request, ct).ConfigureAwait(false);
            return TypedResults.Ok(new WebhookReceipt(true, outcome.ToString().ToLowerInvariant()));
        }
        catch (WebhookRejection rejection)
        {
            return TypedResults.Problem(statusCode: rejection.Status, title: rejection.Title, detail: rejection.Message);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            // Stripe or the database is unreachable, or Stripe no longer has what the event names: Stripe
            // retries a non-2xx delivery for days, so answer "later", never "broken".
            LogFailed(logger, ex);
            return TypedResults.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "Temporarily unable to apply the event", detail: "It will be applied when Stripe redelivers it.");
        }
    }

    private async Task<WebhookOutcome> ProcessAsync(HttpRequest request, CancellationToken ct)
    {
        if (secret.Value is not { } signingSecret)
        {
            throw new WebhookRejection(StatusCodes.Status503ServiceUnavailable, "Webhooks are not configured", "Set Stripe:WebhookSecret (whsec_…).");
        }

        var json = await ReadBodyAsync(request, options.Value.MaxWebhookBodyBytes, ct).ConfigureAwait(false);
        var signature = request.Headers["Stripe-Signature"].ToString();
        if (string.IsNullOrEmpty(signature))
        {
            throw BadSignature("The Stripe-Signature header is missing.");
        }

        try
        {
            EventUtility.ValidateSignature(json, signature, signingSecret, (long)options.Value.WebhookTolerance.TotalSeconds, time.GetUtcNow().ToUnixTimeSeconds());
        }
        catch (StripeException ex)
        {
            LogBadSignature(logger, ex.Message);
            throw BadSignature("The Stripe-Signature header does not match the body, or its timestamp is outside the tolerance.");
        }

        var envelope = Envelope.Parse(json);
        if (!StripeWebhookEvents.Handled.Contains(envelope.Type))
        {
            LogIgnored(logger, envelope.Type, envelope.Id);
            return WebhookOutcome.Ignored;
        }

        if (await store.IsWebhookEventProcessedAsync(envelope.Id, ct).ConfigureAwait(false))
        {
            return WebhookOutcome.Duplicate;
        }

        var outcome = envelope.Type switch
        {
            StripeWebhookEvents.SubscriptionCreated or StripeWebhookEvents.SubscriptionUpdated or StripeWebhookEvents.SubscriptionDeleted =>
                (await accounts.SyncAsync(envelope.ObjectId("sub_"), envelope.Id, envelope.Type, ct).ConfigureAwait(false)).Outcome == SubscriptionApplyOutcome.Duplicate
                    ? WebhookOutcome.Duplicate
                    : WebhookOutcome.Handled,
            StripeWebhookEvents.InvoiceCreated => await FlushForInvoiceAsync(envelope, ct).ConfigureAwait(false),
            StripeWebhookEvents.CheckoutSessionCompleted => await CheckoutCompletedAsync(envelope, ct).ConfigureAwait(false),
            _ => await MeterErrorAsync(json, envelope, ct).ConfigureAwait(false),
        };
        LogHandled(logger, envelope.Type, envelope.Id, outcome);
        return outcome;
    }

    /// <summary>
    /// The invoice is being drafted: report this customer's usage now, inside Stripe's grace period. The answer is
    /// 2xx only once Stripe has acknowledged every pending report of the customer: Stripe finalizes an invoice an hour
    /// after its <c>invoice.created</c> was delivered (or finally failed, at most 72 h), so a 503 while a send failed,
    /// waits in backoff or is still in flight with another flusher holds the invoice open until a redelivery finds
    /// the usage reported.
    /// </summary>
    private async Task<WebhookOutcome> FlushForInvoiceAsync(Envelope envelope, CancellationToken ct)
    {
        var customerId = envelope.ObjectString("customer");
        if (await store.FindByCustomerAsync(customerId, ct).ConfigureAwait(false) is { } account)
        {
            var flusher = services.GetService<IUsageFlusher>();
            if (flusher is null)
            {
                LogNoFlusher(logger, customerId);
            }
            else
            {
                // A failure to reach the database throws: 503, the event is not recorded and Stripe retries it.
                var result = await flusher.FlushCustomerAsync(account.UserId, ct).ConfigureAwait(false);
                LogFlushed(logger, customerId, result.ReportsSent);
                var left = await services.GetRequiredService<IUsageFlushStore>().GetLeasesAsync(time.GetUtcNow(), customerId, ct).ConfigureAwait(false);
                var unsent = left.DueReports + left.InBackoff + left.Leased;
                if (result.ConfigurationError is not null || unsent > 0)
                {
                    var why = result.ConfigurationError
                        ?? $"{unsent} of its usage reports are not yet acknowledged by Stripe ({left.DueReports} due, {left.InBackoff} waiting to retry, {left.Leased} being sent by another flusher)";
                    LogInvoiceUsageUnsent(logger, customerId, why);
                    throw new WebhookRejection(
                        StatusCodes.Status503ServiceUnavailable,
                        "Usage not yet reported",
                        $"The customer's usage is not all reported for its new invoice: {why}. Redeliver the event later.");
                }
            }
        }

        return await store.MarkWebhookEventProcessedAsync(envelope.Id, envelope.Type, ct).ConfigureAwait(false) ? WebhookOutcome.Handled : WebhookOutcome.Duplicate;
    }

    private async Task<WebhookOutcome> CheckoutCompletedAsync(Envelope envelope, CancellationToken ct)
    {
        if (!await accounts.ApplyCompletedCheckoutAsync(envelope.ObjectId("cs_"), envelope.Id, envelope.Type, ct).ConfigureAwait(false))
        {
            await store.MarkWebhookEventProcessedAsync(envelope.Id, envelope.Type, ct).ConfigureAwait(false);
        }

        return WebhookOutcome.Handled;
    }

    /// <summary>
    /// A thin meter error report (delivered to an event destination): Stripe found accepted meter events
    /// invalid. Stripe.net parses the notification and fetches the event; the reports its sample errors
    /// name become dead with Stripe's code.
    /// </summary>
    private async Task<WebhookOutcome> MeterErrorAsync(string json, Envelope envelope, CancellationToken ct)
    {
        if (!envelope.Thin)
        {
            throw new WebhookRejection(StatusCodes.Status400BadRequest, "Not a thin event", $"{envelope.Type} arrives as a thin event (object v2.core.event).");
        }

        global::Stripe.V2.Core.EventNotification notification;
        try
        {
            notification = stripe.ParseEventNotificationWithoutVerification(json);
        }
        catch (Exception ex) when (ex is JsonException or Newtonsoft.Json.JsonException or StripeException or InvalidCastException)
        {
            throw new WebhookRejection(StatusCodes.Status400BadRequest, "Malformed thin event", ex.Message);
        }

        var errors = new List<(string Reason, List<Guid> Ids)>();
        switch (notification)
        {
            case V1BillingMeterErrorReportTriggeredEventNotification triggered:
                var full = await triggered.FetchEventAsync().ConfigureAwait(false);
                foreach (var type in full.Data?.Reason?.ErrorTypes ?? [])
                {
                    errors.Add(Describe(type.Code, type.SampleErrors?.Select(s => ((string?)s.ErrorMessage, s.Request?.Identifier))));
                }

                break;
            case V1BillingMeterNoMeterFoundEventNotification noMeter:
                var fullNoMeter = await noMeter.FetchEventAsync().ConfigureAwait(false);
                foreach (var type in fullNoMeter.Data?.Reason?.ErrorTypes ?? [])
                {
                    errors.Add(Describe(type.Code, type.SampleErrors?.Select(s => ((string?)s.ErrorMessage, s.Request?.Identifier))));
                }

                break;
            default:
                throw new WebhookRejection(StatusCodes.Status400BadRequest, "Malformed thin event", $"Stripe.net did not recognise {envelope.Type}.");
        }

        // The dead reports and the event's record in one transaction: a crash between them cannot record one without the other.
        var flushStore = services.GetRequiredService<IUsageFlushStore>();
        var groups = errors.Where(e => e.Ids.Count > 0).Select(e => new DeadReportGroup(e.Ids, e.Reason)).ToList();
        if (await flushStore.MarkDeadAsync(envelope.Id, envelope.Type, groups, ct).ConfigureAwait(false) is not { } changed)
        {
            return WebhookOutcome.Duplicate;
        }

        LogMeterErrors(logger, envelope.Id, changed);
        return WebhookOutcome.Handled;
    }

    /// <summary>One error type's reason and the report ids (our identifiers are report ids) its samples name.</summary>
    private static (string Reason, List<Guid> Ids) Describe(string? code, IEnumerable<(string? Message, string? Identifier)>? samples)
    {
        var list = samples?.ToList() ?? [];
        var ids = list.Select(s => Guid.TryParse(s.Identifier, out var id) ? id : (Guid?)null).Where(id => id is not null).Select(id => id!.Value).ToList();
        var message = list.Select(s => s.Message).FirstOrDefault(m => !string.IsNullOrEmpty(m)) ?? "rejected by Stripe after acceptance";
        return ($"stripe_async_error {code ?? "unknown"}: {message}", ids);
    }

    /// <summary>Reads at most <paramref name="limit"/> bytes of the body (chunked or not); a longer body is refused without reading the rest.</summary>
    private static async Task<string> ReadBodyAsync(HttpRequest request, int limit, CancellationToken ct)
    {
        if (request.ContentLength > limit)
        {
            throw TooLarge(limit);
        }

        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(limit + 1, 64 * 1024));
        try
        {
            using var body = new MemoryStream();
            int read;
            while ((read = await request.Body.ReadAsync(buffer.AsMemory(0, Math.Min(buffer.Length, limit + 1 - (int)body.Length)), ct).ConfigureAwait(false)) > 0)
            {
                body.Write(buffer, 0, read);
                if (body.Length > limit)
                {
                    throw TooLarge(limit);
                }
            }

            return Encoding.UTF8.GetString(body.GetBuffer(), 0, (int)body.Length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static WebhookRejection TooLarge(int limit) =>
        new(StatusCodes.Status413PayloadTooLarge, "Payload too large", $"A Stripe event is at most {limit} bytes here.");

    private static WebhookRejection BadSignature(string detail) => new(StatusCodes.Status400BadRequest, "Invalid Stripe signature", detail);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rejected a webhook delivery: {Reason}")]
    private static partial void LogBadSignature(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Ignored webhook event {Type} ({EventId})")]
    private static partial void LogIgnored(ILogger logger, string type, string eventId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Webhook event {Type} ({EventId}): {Outcome}")]
    private static partial void LogHandled(ILogger logger, string type, string eventId, WebhookOutcome outcome);

    [LoggerMessage(Level = LogLevel.Error, Message = "A webhook delivery could not be applied; answered 503 so that Stripe retries it")]
    private static partial void LogFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "invoice.created for {CustomerId}, but no IUsageFlusher is registered: usage is reported on the flusher's next cycle only")]
    private static partial void LogNoFlusher(ILogger logger, string customerId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Flushed usage of {CustomerId} for its new invoice: {Sent} reports sent")]
    private static partial void LogFlushed(ILogger logger, string customerId, int sent);

    [LoggerMessage(Level = LogLevel.Warning, Message = "invoice.created for {CustomerId} answered 503 so that Stripe holds the invoice and redelivers: {Reason}")]
    private static partial void LogInvoiceUsageUnsent(ILogger logger, string customerId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Meter error report {EventId}: {Count} usage reports marked dead")]
    private static partial void LogMeterErrors(ILogger logger, string eventId, int count);

    /// <summary>The envelope fields every handled event needs, checked before anything is applied.</summary>
    private sealed record Envelope(string Id, string Type, bool Thin, JsonElement? DataObject)
    {
        public static Envelope Parse(string json)
        {
            try
            {
                using var document = JsonDocument.Parse(json);
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object
                    || !root.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(id.GetString())
                    || !root.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(type.GetString()))
                {
                    throw Malformed("A Stripe event is a JSON object with a string id and type.");
                }

                var thin = root.TryGetProperty("object", out var o) && o.ValueKind == JsonValueKind.String && o.GetString() == "v2.core.event";
                JsonElement? dataObject = root.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Object
                    && data.TryGetProperty("object", out var obj) && obj.ValueKind == JsonValueKind.Object
                    ? obj.Clone()
                    : null;
                return new Envelope(id.GetString()!, type.GetString()!, thin, dataObject);
            }
            catch (JsonException ex)
            {
                throw Malformed($"The body is not JSON: {ex.Message}");
            }
        }

        /// <summary><c>data.object.id</c>, which must be an id with the given prefix.</summary>
        public string ObjectId(string prefix)
        {
            var id = ObjectString("id");
            return id.StartsWith(prefix, StringComparison.Ordinal) ? id : throw Malformed($"{Type}: data.object.id must be a {prefix}… id, was '{id}'.");
        }

        /// <summary>A string property of <c>data.object</c>.</summary>
        public string ObjectString(string name)
        {
            if (DataObject is not { } obj)
            {
                throw Malformed($"{Type}: data.object must be an object.");
            }

            return obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String && !string.IsNullOrEmpty(value.GetString())
                ? value.GetString()!
                : throw Malformed($"{Type}: data.object.{name} must be a non-empty string.");
        }

        private static WebhookRejection Malformed(string detail) => new(StatusCodes.Status400BadRequest, "Malformed Stripe event", detail);
    }
}

/// <summary>The body of a 200 answer.</summary>
/// <param name="Received">Always <see langword="true"/>.</param>
/// <param name="Outcome">handled, duplicate or ignored.</param>
internal sealed record WebhookReceipt(bool Received, string Outcome);

/// <summary>A delivery refused for what it is (4xx), or answered 503 when not configured or an invoice's usage is not yet reported.</summary>
/// <param name="status">The status code.</param>
/// <param name="title">The problem's title.</param>
/// <param name="detail">What is wrong.</param>
internal sealed class WebhookRejection(int status, string title, string detail) : Exception(detail)
{
    public int Status { get; } = status;

    public string Title { get; } = title;
}
