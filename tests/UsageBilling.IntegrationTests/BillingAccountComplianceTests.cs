using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Stripe;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// The billing account (<c>UsageBilling.AspNetCore</c>) against the emulator through Stripe.net, with its
/// webhook endpoint on a real socket, on both databases.
/// </summary>
public abstract class BillingAccountComplianceTests(Provider provider) : IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new(2026, 11, 20, 12, 0, 0, TimeSpan.Zero);

    private TestDatabase _database = null!;

    private AccountsHost Host { get; set; } = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(provider);
        Host = await AccountsHost.StartAsync(_database, Now);
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        await _database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task AttachMeteredPrices_AdoptsAnExistingFlatSubscription_LeavingItsItemAlone()
    {
        // The app's own flat-rate product, outside UsageBilling.
        var product = await Host.Stripe.V1.Products.CreateAsync(new ProductCreateOptions { Name = "Team plan" }, cancellationToken: Ct);
        var flat = await Host.Stripe.V1.Prices.CreateAsync(
            new PriceCreateOptions { Product = product.Id, Currency = "usd", UnitAmount = 4900, Recurring = new PriceRecurringOptions { Interval = "month" } },
            cancellationToken: Ct);
        var customer = await Host.Stripe.V1.Customers.CreateAsync(new CustomerCreateOptions { Email = "team@example.com" }, cancellationToken: Ct);
        var existing = await Host.Stripe.V1.Subscriptions.CreateAsync(
            new SubscriptionCreateOptions { Customer = customer.Id, Items = [new SubscriptionItemOptions { Price = flat.Id, Quantity = 3 }] },
            cancellationToken: Ct);
        var userId = await Host.NewUserAsync();

        var account = await Host.Accounts.AttachMeteredPricesAsync(userId, existing.Id, "starter", Ct);
        var again = await Host.Accounts.AttachMeteredPricesAsync(userId, existing.Id, "starter", Ct);

        Assert.Equal(customer.Id, account.StripeCustomerId);
        Assert.Equal("starter", account.PlanId);
        Assert.Equal([existing.Id], again.SubscriptionIds);
        var stripe = await Host.Stripe.V1.Subscriptions.GetAsync(existing.Id, cancellationToken: Ct);
        Assert.Equal(3, stripe.Items.Data.Count);
        var flatItem = Assert.Single(stripe.Items.Data, i => i.Price.Id == flat.Id);
        Assert.Equal(3, flatItem.Quantity);
        await using var db = Host.CreateContext();
        var items = await db.SubscriptionItems.AsNoTracking().Where(i => i.UserId == userId).ToListAsync(Ct);
        Assert.Equal(["ai_messages", "api_calls"], items.Where(i => i.Meter != null).Select(i => i.Meter!).Order(StringComparer.Ordinal));
        Assert.Null(Assert.Single(items, i => i.PriceId == flat.Id).Meter);

        // Usage on the adopted subscription flushes into its period.
        await Host.Get<IUsageRecorder>().RecordAsync(userId, "ai_messages", 7, "adopted-1", cancellationToken: Ct);
        var flushed = await Host.Get<IUsageFlusher>().FlushCustomerAsync(userId, Ct);
        Assert.Equal(1, flushed.ReportsSent);
        var period = items.First(i => i.Meter == "ai_messages");
        Assert.Equal(7m, await Host.Emulator.Admin.GetMeterTotalAsync(customer.Id, "ai_messages", period.CurrentPeriodStart, period.CurrentPeriodEnd, Ct));

        // A plan change on an adopted subscription is refused, clearly, with nothing changed.
        var refused = await Assert.ThrowsAsync<BillingAccountException>(() => Host.Accounts.ChangePlanAsync(userId, "volume", cancellationToken: Ct));
        Assert.Equal(BillingAccountError.InvalidSubscriptionState, refused.Error);
        Assert.Equal("active", (await Host.Stripe.V1.Subscriptions.GetAsync(existing.Id, cancellationToken: Ct)).Status);
    }

    [Fact]
    public async Task AttachMeteredPrices_AnotherCustomersSubscription_Refused()
    {
        var userId = await Host.NewUserAsync();
        await Host.Accounts.SubscribeAsync(userId, "starter", cancellationToken: Ct);
        var other = await Host.Stripe.V1.Customers.CreateAsync(new CustomerCreateOptions(), cancellationToken: Ct);
        var prices = await Host.Get<IStripeProvisioner>().ProvisionAsync(dryRun: true, Ct);
        var foreign = await Host.Stripe.V1.Subscriptions.CreateAsync(
            new SubscriptionCreateOptions { Customer = other.Id, Items = [new SubscriptionItemOptions { Price = prices.BasePriceId("starter"), Quantity = 1 }] },
            cancellationToken: Ct);

        var ex = await Assert.ThrowsAsync<BillingAccountException>(() => Host.Accounts.AttachMeteredPricesAsync(userId, foreign.Id, "starter", Ct));
        var unknownPlan = await Assert.ThrowsAsync<BillingAccountException>(() => Host.Accounts.SubscribeAsync(userId, "no-such-plan", cancellationToken: Ct));

        Assert.Equal(BillingAccountError.NotYourSubscription, ex.Error);
        Assert.Equal(BillingAccountError.UnknownPlan, unknownPlan.Error);
        Assert.Single((await Host.Stripe.V1.Subscriptions.GetAsync(foreign.Id, cancellationToken: Ct)).Items.Data);
    }

    [Fact]
    public async Task ChangePlan_MidPeriodWithOverage_OldPeriodsOverageInvoicedExactly()
    {
        var userId = await Host.NewUserAsync();
        var subscribed = await Host.Accounts.SubscribeAsync(userId, "starter", cancellationToken: Ct);
        var customer = (await Host.Accounts.GetAsync(userId, Ct))!.StripeCustomerId;
        Host.Time.Advance(TimeSpan.FromDays(3));

        // 100 included, then 0.02 each: 150 messages leave an overage of 50 × 2 ¢ = 100 ¢. None flushed yet.
        var recorder = Host.Get<IUsageRecorder>();
        for (var i = 0; i < 3; i++)
        {
            await recorder.RecordAsync(userId, "ai_messages", 50, $"m{i}", cancellationToken: Ct);
        }

        Host.Time.Advance(TimeSpan.FromMinutes(5));
        var changed = await Host.Accounts.ChangePlanAsync(userId, "volume", cancellationToken: Ct);

        var old = await Host.Stripe.V1.Subscriptions.GetAsync(subscribed.SubscriptionId, cancellationToken: Ct);
        Assert.Equal("canceled", old.Status);
        var account = (await Host.Accounts.GetAsync(userId, Ct))!;
        Assert.Equal("volume", account.PlanId);
        Assert.Equal([changed.SubscriptionId!], account.SubscriptionIds);

        // The final invoice of the old subscription carries the overage; it finalizes after the grace period.
        Host.Time.Advance(TimeSpan.FromHours(2));
        var invoice = await FinalInvoiceAsync(customer, old.Id);
        var overage = await MeteredLineAsync(invoice, "starter", "ai_messages");
        Assert.Equal(150, overage.Quantity);
        Assert.Equal(100, overage.Amount);
        Assert.NotEqual("draft", invoice.Status);
    }

    [Fact]
    public async Task Cancel_Now_UnfinishedPeriodsUsageInvoiced()
    {
        var userId = await Host.NewUserAsync();
        var subscribed = await Host.Accounts.SubscribeAsync(userId, "starter", cancellationToken: Ct);
        var customer = (await Host.Accounts.GetAsync(userId, Ct))!.StripeCustomerId;
        Host.Time.Advance(TimeSpan.FromDays(10));
        await Host.Get<IUsageRecorder>().RecordAsync(userId, "ai_messages", 130, "cancel-now", cancellationToken: Ct);
        Host.Time.Advance(TimeSpan.FromMinutes(1));

        var account = await Host.Accounts.CancelAsync(userId, atPeriodEnd: false, Ct);

        Assert.Null(account.PlanId);
        Assert.Empty(account.SubscriptionIds);
        Host.Time.Advance(TimeSpan.FromHours(2));
        var line = await MeteredLineAsync(await FinalInvoiceAsync(customer, subscribed.SubscriptionId!), "starter", "ai_messages");
        Assert.Equal(130, line.Quantity);
        Assert.Equal(60, line.Amount);
        await Assert.ThrowsAsync<BillingAccountException>(() => Host.Accounts.CancelAsync(userId, atPeriodEnd: false, Ct));
    }

    [Fact]
    public async Task Cancel_AtPeriodEnd_PeriodBilledWithUsageRecordedUntilItsEnd()
    {
        await Host.Get<StripeWebhookRegistration>().RegisterAsync(Host.WebhookUrl, Ct);
        var userId = await Host.NewUserAsync();
        var subscribed = await Host.Accounts.SubscribeAsync(userId, "starter", cancellationToken: Ct);
        var customer = (await Host.Accounts.GetAsync(userId, Ct))!.StripeCustomerId;
        Host.Time.Advance(TimeSpan.FromDays(5));
        await Host.Get<IUsageRecorder>().RecordAsync(userId, "ai_messages", 110, "before-cancel", cancellationToken: Ct);

        var account = await Host.Accounts.CancelAsync(userId, atPeriodEnd: true, Ct);
        Assert.Equal("starter", account.PlanId);
        Assert.True((await Host.Stripe.V1.Subscriptions.GetAsync(subscribed.SubscriptionId, cancellationToken: Ct)).CancelAtPeriodEnd);

        // Used after the cancellation and never flushed by hand: invoice.created flushes it into the period.
        Host.Time.Advance(TimeSpan.FromDays(10));
        await Host.Get<IUsageRecorder>().RecordAsync(userId, "ai_messages", 15, "after-cancel", cancellationToken: Ct);
        await using (var db = Host.CreateContext())
        {
            var periodEnd = (await db.SubscriptionItems.AsNoTracking().FirstAsync(i => i.UserId == userId && i.Meter == "ai_messages", Ct)).CurrentPeriodEnd;
            Host.Time.Advance(periodEnd - Host.Time.GetUtcNow() + TimeSpan.FromMinutes(1));
        }

        await WaitForAsync(async () => (await Host.Stripe.V1.Subscriptions.GetAsync(subscribed.SubscriptionId, cancellationToken: Ct)).Status == "canceled", "the subscription ended at its period end");
        // The period's own invoice.created (not the one subscribing drafted): its handler's flush is what bills the 15.
        await WaitForAsync(
            async () =>
            {
                var ids = await CycleInvoiceCreatedEventsAsync(customer, subscribed.SubscriptionId!);
                return (await Host.Emulator.Admin.GetWebhookDeliveriesAsync(Ct)).Any(d => ids.Contains(d.EventId) && d.Succeeded);
            },
            "the period's invoice.created delivered");
        Host.Time.Advance(TimeSpan.FromHours(2));
        var line = await MeteredLineAsync(await FinalInvoiceAsync(customer, subscribed.SubscriptionId!), "starter", "ai_messages");
        Assert.Equal(125, line.Quantity);
        Assert.Equal(50, line.Amount);
        await WaitForAsync(async () => (await Host.Accounts.GetAsync(userId, Ct))!.PlanId is null, "the deleted event removed the plan");
    }

    [Fact]
    public async Task InvoiceCreated_FlushFailsOnce_AnswersNotYetSoStripeHoldsTheInvoice_UsageBilledOnRedelivery()
    {
        // Stripe's rule, modelled: the draft finalizes an hour after its invoice.created was delivered. Redeliveries
        // 1, 3 and 10 s apart leave room to move the clock between them on a busy machine.
        await Host.DisposeAsync();
        Host = await AccountsHost.StartAsync(_database, Now, emulatorOptions: o =>
        {
            o.InvoiceFinalizationWaitsForWebhooks = true;
            o.WebhookRetryDelays = [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(10)];
        });
        await Host.Get<StripeWebhookRegistration>().RegisterAsync(Host.WebhookUrl, Ct);
        var userId = await Host.NewUserAsync();
        var subscribed = await Host.Accounts.SubscribeAsync(userId, "starter", cancellationToken: Ct);
        var customer = (await Host.Accounts.GetAsync(userId, Ct))!.StripeCustomerId;
        await Host.WebhookDeliveriesSettledAsync();
        Host.Time.Advance(TimeSpan.FromDays(5));
        await Host.Get<IUsageRecorder>().RecordAsync(userId, "ai_messages", 110, "unflushed", cancellationToken: Ct);

        // Never flushed by hand; the period ends, and the invoice.created flush's first send fails.
        await Host.Emulator.Admin.InjectFaultAsync(new StripeEmulator.Admin.FaultSpec("/v1/billing/meter_events", StripeEmulator.Admin.FaultKind.ServerError), Ct);
        await using (var db = Host.CreateContext())
        {
            var periodEnd = (await db.SubscriptionItems.AsNoTracking().FirstAsync(i => i.UserId == userId && i.Meter == "ai_messages", Ct)).CurrentPeriodEnd;
            Host.Time.Advance(periodEnd - Host.Time.GetUtcNow() + TimeSpan.FromMinutes(1));
        }

        string? eventId = null;
        var firstAnswer = 0;
        await WaitForAsync(
            async () =>
            {
                eventId = (await CycleInvoiceCreatedEventsAsync(customer, subscribed.SubscriptionId!)).FirstOrDefault();
                firstAnswer = (await Host.Emulator.Admin.GetWebhookDeliveriesAsync(Ct)).FirstOrDefault(d => d.EventId == eventId)?.StatusCode ?? 0;
                return firstAnswer != 0;
            },
            "the first delivery of the period's invoice.created");

        // The usage was not reported, so the app answered "later" (503) rather than letting the invoice close without it.
        Assert.Equal(503, firstAnswer);
        Assert.Equal(0, (await Host.Emulator.Admin.GetMeterEventsAsync(customer, cancellationToken: Ct)).Count(e => e.Value == 110));

        // The report's retry comes due; Stripe's redelivery flushes it, and the invoice finalizes an hour after that answer.
        Host.Time.Advance(TimeSpan.FromMinutes(11));
        await WaitForAsync(async () => (await Host.Emulator.Admin.GetWebhookDeliveriesAsync(Ct)).Any(d => d.EventId == eventId && d.Succeeded), "a redelivery answered 2xx");
        Host.Time.Advance(TimeSpan.FromHours(2));
        var invoice = await FinalInvoiceAsync(customer, subscribed.SubscriptionId!);
        Assert.Equal("paid", invoice.Status);
        Assert.Equal(110, (await MeteredLineAsync(invoice, "starter", "ai_messages")).Quantity);
    }

    [Fact]
    public async Task Webhooks_SubscriptionEventsInEveryOrder_LocalStateEqualsStripes()
    {
        var userId = await Host.NewUserAsync();
        var customer = (await Host.Accounts.EnsureCustomerAsync(userId, "o@example.com", Ct)).StripeCustomerId;
        var prices = await Host.Get<IStripeProvisioner>().ProvisionAsync(dryRun: true, Ct);
        string[] types = ["customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"];
        foreach (var order in Permutations([0, 1, 2]))
        {
            // Created, changed (another plan's metered price added) and ended in Stripe, outside the app.
            var subscription = await Host.Stripe.V1.Subscriptions.CreateAsync(
                new SubscriptionCreateOptions
                {
                    Customer = customer,
                    Items = [new SubscriptionItemOptions { Price = prices.BasePriceId("starter"), Quantity = 1 }, new SubscriptionItemOptions { Price = prices.MeteredPriceId("starter", "ai_messages") }],
                    Metadata = new Dictionary<string, string> { [UsageBillingMetadata.PlanKey] = "starter" },
                },
                cancellationToken: Ct);
            var events = new List<string> { await EventAsync(types[0], subscription.Id) };
            await Host.Stripe.V1.Subscriptions.UpdateAsync(subscription.Id, new SubscriptionUpdateOptions { Items = [new SubscriptionItemOptions { Price = prices.MeteredPriceId("starter", "api_calls") }] }, cancellationToken: Ct);
            events.Add(await EventAsync(types[1], subscription.Id));
            await Host.Stripe.V1.Subscriptions.CancelAsync(subscription.Id, cancellationToken: Ct);
            events.Add(await EventAsync(types[2], subscription.Id));

            foreach (var i in order)
            {
                Assert.Equal(HttpStatusCode.OK, (await PostSignedAsync(events[i])).StatusCode);
            }

            await AssertMatchesStripeAsync(userId, $"order {string.Join(",", order.Select(i => types[i]))}");
        }

        // Created and updated, still live: both orders end on Stripe's items; a redelivery changes nothing.
        foreach (var order in Permutations([0, 1]))
        {
            var subscription = await Host.Stripe.V1.Subscriptions.CreateAsync(
                new SubscriptionCreateOptions
                {
                    Customer = customer,
                    Items = [new SubscriptionItemOptions { Price = prices.BasePriceId("volume"), Quantity = 1 }],
                    Metadata = new Dictionary<string, string> { [UsageBillingMetadata.PlanKey] = "volume" },
                },
                cancellationToken: Ct);
            var created = await EventAsync(types[0], subscription.Id);
            await Host.Stripe.V1.Subscriptions.UpdateAsync(subscription.Id, new SubscriptionUpdateOptions { Items = [new SubscriptionItemOptions { Price = prices.MeteredPriceId("volume", "ai_messages") }] }, cancellationToken: Ct);
            var updated = await EventAsync(types[1], subscription.Id);
            var events = new[] { created, updated };
            foreach (var i in order)
            {
                Assert.Equal(HttpStatusCode.OK, (await PostSignedAsync(events[i])).StatusCode);
            }

            await AssertMatchesStripeAsync(userId, $"live order {string.Join(",", order)}");
            var replay = await PostSignedAsync(created);
            Assert.Contains("duplicate", await replay.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
            await AssertMatchesStripeAsync(userId, "after a redelivery");
            await Host.Stripe.V1.Subscriptions.CancelAsync(subscription.Id, cancellationToken: Ct);
            await PostSignedAsync(await EventAsync(types[2], subscription.Id));
        }
    }

    [Fact]
    public async Task Subscribe_RacingItsOwnWebhook_NoConflictLogged()
    {
        await Host.Get<StripeWebhookRegistration>().RegisterAsync(Host.WebhookUrl, Ct);
        var users = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            users.Add(await Host.NewUserAsync());
        }

        var subscribed = await Task.WhenAll(users.Select(u => Host.Accounts.SubscribeAsync(u, "starter", cancellationToken: Ct)));

        // The same subscription applied by several callers at once (webhook retries, concurrent deliveries): it
        // starts unmirrored, so without the per-account lock they would all insert the same items.
        var prices = await Host.Get<IStripeProvisioner>().ProvisionAsync(dryRun: true, Ct);
        foreach (var user in users)
        {
            var customer = (await Host.Accounts.GetAsync(user, Ct))!.StripeCustomerId;
            var extra = await Host.Stripe.V1.Subscriptions.CreateAsync(
                new SubscriptionCreateOptions
                {
                    Customer = customer,
                    Items = [new SubscriptionItemOptions { Price = prices.MeteredPriceId("starter", "api_calls") }],
                    Metadata = new Dictionary<string, string> { [UsageBillingMetadata.PlanKey] = "starter" },
                },
                cancellationToken: Ct);
            await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Host.Accounts.SyncSubscriptionAsync(extra.Id, Ct)));
        }

        Assert.All(subscribed, s => Assert.True(s.Subscribed));
        await WaitForAsync(
            async () =>
            {
                var deliveries = await Host.Emulator.Admin.GetWebhookDeliveriesAsync(Ct);
                return deliveries.Count(d => d.EventType == "customer.subscription.created" && d.Succeeded) >= users.Count;
            },
            "every customer.subscription.created delivered and answered 2xx");

        var conflicts = Host.Errors.Entries.Where(e => e.StartsWith("Error", StringComparison.Ordinal) || e.Contains("UNIQUE", StringComparison.OrdinalIgnoreCase) || e.Contains("duplicate key", StringComparison.OrdinalIgnoreCase)).ToList();
        Assert.True(conflicts.Count == 0, string.Join("\n", conflicts));
        foreach (var user in users)
        {
            await AssertMatchesStripeAsync(user, "after subscribe + webhook");
        }
    }

    [Theory]
    [InlineData("""{"id":"evt_nodata","object":"event","type":"customer.subscription.updated"}""")]
    [InlineData("""{"id":"evt_stringobj","object":"event","type":"customer.subscription.updated","data":{"object":"sub_123"}}""")]
    [InlineData("""{"id":"evt_noid","object":"event","type":"customer.subscription.deleted","data":{"object":{"object":"subscription"}}}""")]
    [InlineData("""{"id":"evt_badprefix","object":"event","type":"checkout.session.completed","data":{"object":{"id":"sub_x"}}}""")]
    [InlineData("""{"id":"evt_nocustomer","object":"event","type":"invoice.created","data":{"object":{"id":"in_1","customer":7}}}""")]
    [InlineData("""{"object":"event","type":"customer.subscription.updated","data":{"object":{"id":"sub_1"}}}""")]
    [InlineData("""{"id":"evt_thin_not","object":"event","type":"v1.billing.meter.error_report_triggered","data":{}}""")]
    [InlineData("""[1,2,3]""")]
    [InlineData("""not json at all""")]
    public async Task Webhook_MalformedSignedEvent_400AndNothingRecorded(string payload)
    {
        var response = await PostSignedAsync(payload);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        await using var db = Host.CreateContext();
        Assert.False(await db.ProcessedWebhookEvents.AnyAsync(Ct));
    }

    [Fact]
    public async Task Webhook_ChunkedBodyOverTheCap_413WithoutReadingItAll()
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, Host.WebhookUrl) { Content = new ChunkedContent(1024 * 1024) };
        request.Headers.TransferEncodingChunked = true;
        request.Headers.Add("Stripe-Signature", "t=1,v1=00");

        using var response = await http.SendAsync(request, Ct);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var cap = new BillingAccountOptions().MaxWebhookBodyBytes;
        Assert.InRange(Host.Probe.LastRead, cap + 1, cap + (64 * 1024));
    }

    [Fact]
    public async Task Webhook_ThinMeterErrorFromStripe_NamedReportDeadWithStripesCode()
    {
        await Host.Get<StripeWebhookRegistration>().RegisterAsync(Host.WebhookUrl, Ct);
        var userId = await Host.NewUserAsync();
        await Host.Accounts.SubscribeAsync(userId, "starter", cancellationToken: Ct);
        var customer = (await Host.Accounts.GetAsync(userId, Ct))!.StripeCustomerId;

        // Subscribing drafts the first invoice and the app flushes the customer on invoice.created: let that delivery
        // finish before recording, or under load it sends the event while the customer still exists.
        await Host.WebhookDeliveriesSettledAsync();

        await Host.Get<IUsageRecorder>().RecordAsync(userId, "ai_messages", 3, "doomed", cancellationToken: Ct);

        // The customer disappears in Stripe: the meter event is accepted (200), then reported invalid as a thin event.
        await Host.Stripe.V1.Customers.DeleteAsync(customer, cancellationToken: Ct);
        await Host.Get<IUsageFlusher>().FlushCustomerAsync(userId, Ct);

        await using var db = Host.CreateContext();
        await WaitForAsync(async () => await db.UsageReports.AsNoTracking().AnyAsync(r => r.StripeCustomerId == customer && r.Status == UsageReportStatus.Dead, Ct), "the report is dead");
        var report = await db.UsageReports.AsNoTracking().SingleAsync(r => r.StripeCustomerId == customer, Ct);
        Assert.Contains("meter_event_customer_not_found", report.LastError, StringComparison.Ordinal);

        // The delivery is recorded as processed after the reports are marked (its own write, just after): waited for too.
        await WaitForAsync(async () => await db.ProcessedWebhookEvents.AnyAsync(e => e.Type == StripeWebhookEvents.MeterErrorReportTriggered, Ct), "the delivery is recorded as processed");
    }

    private async Task AssertMatchesStripeAsync(Guid userId, string because)
    {
        var customer = (await Host.Accounts.GetAsync(userId, Ct))!.StripeCustomerId;
        var live = new List<Subscription>();
        await foreach (var s in Host.Stripe.V1.Subscriptions.ListAutoPagingAsync(new SubscriptionListOptions { Customer = customer }, cancellationToken: Ct))
        {
            live.Add(s);
        }

        var expected = live.SelectMany(s => s.Items.Data.Select(i => $"{s.Id}/{i.Id}/{i.Price.Id}/{i.CurrentPeriodStart:O}/{i.CurrentPeriodEnd:O}")).Order(StringComparer.Ordinal).ToList();
        await using var db = Host.CreateContext();
        var local = (await db.SubscriptionItems.AsNoTracking().Where(i => i.UserId == userId).ToListAsync(Ct))
            .Select(i => $"{i.SubscriptionId}/{i.Id}/{i.PriceId}/{i.CurrentPeriodStart.UtcDateTime:O}/{i.CurrentPeriodEnd.UtcDateTime:O}").Order(StringComparer.Ordinal).ToList();
        Assert.True(expected.SequenceEqual(local), $"{because}: Stripe [{string.Join(", ", expected)}] vs local [{string.Join(", ", local)}]");
        var plan = (await db.BillingCustomers.AsNoTracking().SingleAsync(c => c.UserId == userId, Ct)).PlanId;
        var expectedPlan = live.Select(s => s.Metadata.GetValueOrDefault(UsageBillingMetadata.PlanKey)).FirstOrDefault();
        Assert.True(expectedPlan == plan, $"{because}: plan {plan}, Stripe says {expectedPlan}");
    }

    /// <summary>The newest event of a type for a subscription, as Stripe would deliver it.</summary>
    private async Task<string> EventAsync(string type, string subscriptionId)
    {
        var raw = await Host.Stripe.RawRequestAsync(HttpMethod.Get, $"/v1/events?type={type}&limit=100", cancellationToken: Ct);
        var match = JsonNode.Parse(raw.Content)!["data"]!.AsArray()
            .First(e => e!["data"]!["object"]!["id"]!.GetValue<string>() == subscriptionId);
        return match!.ToJsonString();
    }

    private async Task<HttpResponseMessage> PostSignedAsync(string payload)
    {
        using var http = new HttpClient();
        using var content = new StringContent(payload, Encoding.UTF8, "application/json");
        content.Headers.Add("Stripe-Signature", EventUtility.GenerateSignatureHeader(payload, AccountsHost.WebhookSecret, Host.Time.GetUtcNow().ToUnixTimeSeconds()));
        var response = await http.PostAsync(Host.WebhookUrl, content, Ct);
        await response.Content.LoadIntoBufferAsync(Ct);
        return response;
    }

    /// <summary>The ids of the <c>invoice.created</c> events of the subscription's period-end (<c>subscription_cycle</c>) invoices.</summary>
    private async Task<HashSet<string>> CycleInvoiceCreatedEventsAsync(string customer, string subscriptionId)
    {
        var invoices = await Host.Stripe.V1.Invoices.ListAsync(new InvoiceListOptions { Customer = customer, Subscription = subscriptionId, Limit = 100 }, cancellationToken: Ct);
        var cycle = invoices.Data.Where(i => i.BillingReason == "subscription_cycle").Select(i => i.Id).ToHashSet(StringComparer.Ordinal);
        var events = await Host.Stripe.V1.Events.ListAsync(new EventListOptions { Type = StripeWebhookEvents.InvoiceCreated, Limit = 100 }, cancellationToken: Ct);
        return events.Data.Where(e => e.Data.Object is Invoice i && cycle.Contains(i.Id)).Select(e => e.Id).ToHashSet(StringComparer.Ordinal);
    }

    private async Task<Invoice> FinalInvoiceAsync(string customer, string subscriptionId)
    {
        Invoice? found = null;
        await WaitForAsync(
            async () =>
            {
                var invoices = await Host.Stripe.V1.Invoices.ListAsync(new InvoiceListOptions { Customer = customer, Subscription = subscriptionId, Limit = 100 }, cancellationToken: Ct);
                found = invoices.Data.Where(i => i.Lines.Data.Any(l => l.Pricing?.PriceDetails?.PriceId is not null || l.Amount != 0)).OrderByDescending(i => i.Created).FirstOrDefault(i => i.Lines.Data.Count > 0 && i.BillingReason != "subscription_create");
                return found is not null;
            },
            "the subscription's final invoice");
        return found!;
    }

    private async Task<InvoiceLineItem> MeteredLineAsync(Invoice invoice, string plan, string meter)
    {
        var prices = await Host.Get<IStripeProvisioner>().ProvisionAsync(dryRun: true, Ct);
        var priceId = prices.MeteredPriceId(plan, meter);
        var full = await Host.Stripe.V1.Invoices.GetAsync(invoice.Id, cancellationToken: Ct);
        return Assert.Single(full.Lines.Data, l => l.Pricing?.PriceDetails?.PriceId == priceId);
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting for {what}.");
            }

            await Task.Delay(50, Ct);
        }
    }

    private static IEnumerable<int[]> Permutations(int[] items) =>
        items.Length <= 1
            ? [items]
            : items.SelectMany((x, i) => Permutations([.. items.Take(i), .. items.Skip(i + 1)]).Select(rest => (int[])[x, .. rest]));

    /// <summary>A body of <paramref name="size"/> bytes sent chunked (no Content-Length).</summary>
    private sealed class ChunkedContent(int size) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var chunk = new byte[16 * 1024];
            Array.Fill(chunk, (byte)'a');
            try
            {
                for (var sent = 0; sent < size; sent += chunk.Length)
                {
                    await stream.WriteAsync(chunk);
                }
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException)
            {
                // The server answered and closed before taking it all: what the test wants.
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}

public sealed class SqliteBillingAccountTests() : BillingAccountComplianceTests(Provider.Sqlite);

public sealed class PostgresBillingAccountTests() : BillingAccountComplianceTests(Provider.Postgres);
