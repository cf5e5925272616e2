using Stripe;

namespace ExistingApp;

/// <summary>Registers the app's Stripe client (from <c>Stripe:SecretKey</c> and <c>Stripe:ApiBase</c>) and <see cref="FlatRatePlan"/>.</summary>
public static class FlatRatePlanRegistration
{
    public static IServiceCollection AddFlatRatePlan(this IServiceCollection services, IConfiguration config) =>
        services
            .AddSingleton(_ => new StripeClient(new StripeClientOptions
            {
                ApiKey = config["Stripe:SecretKey"],
                ApiBase = config["Stripe:ApiBase"],
                MeterEventsBase = config["Stripe:ApiBase"],
            }))
            .AddScoped<FlatRatePlan>();
}

/// <summary>The app's billing before metered billing: one flat monthly price, one subscription per account.</summary>
public sealed class FlatRatePlan(StripeClient stripe)
{
    private const string PriceLookupKey = "existingapp_pro_monthly";

    /// <summary>Creates the account's Stripe customer and its subscription to the flat monthly price.</summary>
    public async Task SubscribeAsync(Account account, CancellationToken ct)
    {
        var customer = await stripe.V1.Customers.CreateAsync(
            new CustomerCreateOptions { Email = account.Email },
            new RequestOptions { IdempotencyKey = $"customer:{account.Id}" },
            ct);
        var subscription = await stripe.V1.Subscriptions.CreateAsync(
            new SubscriptionCreateOptions { Customer = customer.Id, Items = [new SubscriptionItemOptions { Price = (await FlatPriceAsync(ct)).Id }] },
            new RequestOptions { IdempotencyKey = $"subscription:{account.Id}" },
            ct);
        account.StripeCustomerId = customer.Id;
        account.StripeSubscriptionId = subscription.Id;
    }

    private async Task<Price> FlatPriceAsync(CancellationToken ct)
    {
        var prices = await stripe.V1.Prices.ListAsync(new PriceListOptions { LookupKeys = [PriceLookupKey] }, cancellationToken: ct);
        if (prices.Data.FirstOrDefault() is { } price)
        {
            return price;
        }

        var product = await stripe.V1.Products.CreateAsync(new ProductCreateOptions { Name = "Pro" }, new RequestOptions { IdempotencyKey = "existingapp-product-pro" }, ct);
        return await stripe.V1.Prices.CreateAsync(
            new PriceCreateOptions { Product = product.Id, Currency = "usd", UnitAmount = 2900, Recurring = new PriceRecurringOptions { Interval = "month" }, LookupKey = PriceLookupKey },
            new RequestOptions { IdempotencyKey = "existingapp-price-pro" },
            ct);
    }
}
