using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Stripe;
using UsageBilling.Storage;
using UsageBilling.Web.Hosting;

namespace UsageBilling.Web.Billing;

/// <summary>A finalized (or draft) Stripe invoice as the usage page shows it.</summary>
/// <param name="Id">The invoice id (<c>in_…</c>).</param>
/// <param name="Number">The invoice number; <see langword="null"/> while it is a draft.</param>
/// <param name="Status">Stripe's status: draft, open, paid, uncollectible, void.</param>
/// <param name="Total">The total in currency units.</param>
/// <param name="Currency">The invoice currency.</param>
/// <param name="HostedUrl">Stripe's hosted invoice page, once finalized.</param>
internal sealed record PastInvoice(string Id, string? Number, string Status, decimal Total, string Currency, Uri? HostedUrl);

/// <summary>One meter in one past billing period: this app's total beside what Stripe invoiced for it.</summary>
/// <param name="Meter">The meter event name.</param>
/// <param name="MeterName">The meter's display name.</param>
/// <param name="Start">Inclusive start.</param>
/// <param name="End">Exclusive end.</param>
/// <param name="LocalTotal">The period's total from this app's records (the usage rollups).</param>
/// <param name="InvoicedQuantity">The quantity of the meter's line on Stripe's invoice, when there is one.</param>
/// <param name="Invoice">The invoice holding that line, when there is one.</param>
internal sealed record PastPeriod(string Meter, string MeterName, DateTimeOffset Start, DateTimeOffset End, long LocalTotal, long? InvoicedQuantity, PastInvoice? Invoice)
{
    /// <summary>Stripe's quantity minus this app's total; <see langword="null"/> without an invoice line.</summary>
    public long? Difference => InvoicedQuantity is { } q ? q - LocalTotal : null;
}

/// <summary>The account's previous billing periods, and whether Stripe's invoices could be read.</summary>
/// <param name="Periods">Newest first.</param>
/// <param name="InvoicesAvailable">Whether Stripe answered in time; without it the periods hold local totals only.</param>
internal sealed record PastPeriodsView(IReadOnlyList<PastPeriod> Periods, bool InvoicesAvailable);

/// <summary>
/// Past billing periods for the usage page: the local totals from the rollups (always), and Stripe's invoices read
/// through Stripe.net (<c>GET /v1/invoices?customer=</c>) with a short timeout and a short cache, each metered line
/// matched to its meter by the price's <see cref="UsageBillingMetadata.MeterKey"/>. Stripe being slow or down never
/// fails the page: it shows the local totals and says the invoices are unavailable.
/// </summary>
internal sealed partial class PastPeriods(
    IUsageStore store,
    StripeClient stripe,
    IOptions<UsageBillingOptions> options,
    IOptions<AppOptions> app,
    TimeProvider time,
    ILogger<PastPeriods> logger)
{
    /// <summary>How many periods back the page looks.</summary>
    public const int MaxPeriods = 6;

    private readonly ConcurrentDictionary<string, (DateTimeOffset At, IReadOnlyList<Invoice> Invoices)> _invoices = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string?> _meterOfPrice = new(StringComparer.Ordinal);

    /// <summary>The user's past periods, newest first; empty for an account without a Stripe customer.</summary>
    public async Task<PastPeriodsView> GetAsync(Guid userId, CancellationToken cancellationToken)
    {
        var state = await store.GetBillingStateAsync(userId, cancellationToken);
        if (state is null)
        {
            return new PastPeriodsView([], InvoicesAvailable: true);
        }

        var now = time.GetUtcNow();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(app.Value.InvoiceLookupTimeout > TimeSpan.Zero ? app.Value.InvoiceLookupTimeout : TimeSpan.FromSeconds(3));
        var invoices = await InvoicesAsync(state.StripeCustomerId, now, timeout.Token, cancellationToken);

        var rows = new List<PastPeriod>();
        var totals = new Dictionary<(DateTimeOffset, DateTimeOffset), IReadOnlyList<MeterDayUsage>>();
        foreach (var line in invoices?.SelectMany(i => (i.Lines?.Data ?? []).Select(l => (Invoice: i, Line: l))) ?? [])
        {
            if (line.Line.Pricing?.PriceDetails?.PriceId is not { } priceId || line.Line.Period is not { } period)
            {
                continue;
            }

            var meter = await MeterOfPriceAsync(priceId, timeout.Token, cancellationToken);
            if (meter is null || !options.Value.Meters.ContainsKey(meter))
            {
                continue;
            }

            var start = Utc(period.Start);
            var end = Utc(period.End);
            if (end > now)
            {
                continue;
            }

            var local = await LocalTotalAsync(userId, meter, start, end, totals, cancellationToken);
            rows.Add(new PastPeriod(meter, NameOf(meter), start, end, local, line.Line.Quantity ?? 0, ToView(line.Invoice)));
        }

        // Periods of this app's records that no invoice line covers (none yet, or Stripe unavailable).
        foreach (var meter in options.Value.Meters.Keys.Order(StringComparer.Ordinal))
        {
            var item = BillingPeriod.ItemFor(state, meter);
            var period = BillingPeriod.For(now, item);
            for (var k = 0; k < MaxPeriods; k++)
            {
                period = BillingPeriod.For(period.Start.AddSeconds(-1), item);
                if (rows.Any(r => r.Meter == meter && r.Start < period.End && period.Start < r.End))
                {
                    continue;
                }

                var local = await LocalTotalAsync(userId, meter, period.Start, period.End, totals, cancellationToken);
                if (local != 0)
                {
                    rows.Add(new PastPeriod(meter, NameOf(meter), period.Start, period.End, local, null, null));
                }
            }
        }

        return new PastPeriodsView([.. rows.OrderByDescending(r => r.Start).ThenBy(r => r.Meter, StringComparer.Ordinal).Take(MaxPeriods * options.Value.Meters.Count)], invoices is not null);
    }

    private async Task<IReadOnlyList<Invoice>?> InvoicesAsync(string customerId, DateTimeOffset now, CancellationToken timeout, CancellationToken request)
    {
        if (_invoices.TryGetValue(customerId, out var cached) && now - cached.At < app.Value.InvoiceCacheDuration && now >= cached.At)
        {
            return cached.Invoices;
        }

        try
        {
            var list = await stripe.V1.Invoices.ListAsync(new InvoiceListOptions { Customer = customerId, Limit = 24 }, cancellationToken: timeout);
            IReadOnlyList<Invoice> invoices = list.Data;
            _invoices[customerId] = (now, invoices);
            return invoices;
        }
        catch (Exception ex) when (ex is StripeException or HttpRequestException || (ex is OperationCanceledException && !request.IsCancellationRequested))
        {
            LogInvoicesUnavailable(logger, customerId, ex.Message);
            return null;
        }
    }

    private async Task<string?> MeterOfPriceAsync(string priceId, CancellationToken timeout, CancellationToken request)
    {
        if (_meterOfPrice.TryGetValue(priceId, out var known))
        {
            return known;
        }

        try
        {
            var price = await stripe.V1.Prices.GetAsync(priceId, cancellationToken: timeout);
            var meter = price.Metadata is { } m && m.TryGetValue(UsageBillingMetadata.MeterKey, out var name) ? name : null;
            _meterOfPrice[priceId] = meter;
            return meter;
        }
        catch (Exception ex) when (ex is StripeException or HttpRequestException || (ex is OperationCanceledException && !request.IsCancellationRequested))
        {
            // Not cached: the line is left out this time and matched on the next load.
            LogInvoicesUnavailable(logger, priceId, ex.Message);
            return null;
        }
    }

    private async Task<long> LocalTotalAsync(Guid userId, string meter, DateTimeOffset start, DateTimeOffset end, Dictionary<(DateTimeOffset, DateTimeOffset), IReadOnlyList<MeterDayUsage>> cache, CancellationToken ct)
    {
        if (!cache.TryGetValue((start, end), out var days))
        {
            cache[(start, end)] = days = await store.GetUsageByDayAsync(userId, start, end, ct);
        }

        var count = options.Value.Meters[meter].Aggregation == MeterAggregation.Count;
        return days.Where(d => d.Meter == meter).Sum(d => count ? d.Count : d.Total);
    }

    private string NameOf(string meter) => options.Value.Meters[meter].DisplayName ?? meter;

    private static PastInvoice ToView(Invoice invoice) => new(
        invoice.Id,
        string.IsNullOrEmpty(invoice.Number) ? null : invoice.Number,
        invoice.Status,
        invoice.Total / 100m,
        invoice.Currency ?? "usd",
        Uri.TryCreate(invoice.HostedInvoiceUrl, UriKind.Absolute, out var url) && (url.Scheme == Uri.UriSchemeHttps || url.Scheme == Uri.UriSchemeHttp) ? url : null);

    private static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stripe invoices for {Customer} are unavailable; the usage page shows local totals only: {Reason}")]
    private static partial void LogInvoicesUnavailable(ILogger logger, string customer, string reason);
}
